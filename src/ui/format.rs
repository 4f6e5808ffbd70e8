//! How figures read on the page: sizes in binary units, durations, and times.
use crate::domain::Timestamp;

/// Binary units, one decimal: what people read on file dialogs.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn format_elapsed(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    } else {
        let seconds = ms / 1000;
        format!("{} min {:02} s", seconds / 60, seconds % 60)
    }
}

/// `2026-11-26 01:48:21 UTC`: the same text on the server and in the browser, so hydration
/// matches.
pub fn format_time(at: &Timestamp) -> String {
    #[cfg(feature = "ssr")]
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    #[cfg(not(feature = "ssr"))]
    let text = at.clone();
    match (text.get(0..10), text.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_elapsed(850), "850 ms");
        assert_eq!(format_elapsed(12_345), "12.3 s");
        assert_eq!(format_elapsed(245_000), "4 min 05 s");
        assert_eq!(format_elapsed(-5), "0 ms");
    }
}
