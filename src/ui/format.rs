//! How figures read on the page: sizes in binary units, durations, and times.
use crate::domain::Timestamp;

/// Binary units, one decimal: what people read on file dialogs. Integer arithmetic (rounding
/// half to even, as `{:.1}` on the exact quotient does) keeps float formatting out of the wasm.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit < UNITS.len() - 1 && bytes >> (10 * (unit + 1)) > 0 {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let divisor = 1u128 << (10 * unit);
    let scaled = u128::from(bytes) * 10;
    let (mut tenths, rest) = (scaled / divisor, scaled % divisor);
    if rest * 2 > divisor || (rest * 2 == divisor && tenths % 2 == 1) {
        tenths += 1;
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// A job's metadata as compact JSON text: the same on the server (from its value) and in the
/// browser (the text the server sent), so hydration matches.
pub fn metadata_text(metadata: &crate::domain::Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_default()
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
        // The same text as formatting the float quotient with one decimal.
        for bytes in [
            1023,
            1024,
            1075,
            1076,
            1126,
            1127,
            1_048_575,
            5 << 40,
            3 << 50,
            u64::MAX,
        ] {
            let mut value = bytes as f64;
            let mut unit = 0;
            while value >= 1024.0 && unit < 4 {
                value /= 1024.0;
                unit += 1;
            }
            let units = ["B", "KiB", "MiB", "GiB", "TiB"];
            let expected = if unit == 0 {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {}", units[unit])
            };
            assert_eq!(format_bytes(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_elapsed(850), "850 ms");
        assert_eq!(format_elapsed(12_345), "12.3 s");
        assert_eq!(format_elapsed(245_000), "4 min 05 s");
        assert_eq!(format_elapsed(-5), "0 ms");
    }
}
