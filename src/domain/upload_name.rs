//! `UploadName`: the client's name for a file, made safe to show. It is never used as a path.

/// Longest name kept, in bytes (the common file-system limit).
const MAX_LEN: usize = 255;

/// The Unicode format characters (general category Cf, Unicode 16): invisible, and some
/// reorder the text around them (U+202E shows `invoice\u{202E}gnp.exe` as "invoiceexe.png").
/// A short list rather than a Unicode table crate, because this code ships in the browser too.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadName(String);

impl UploadName {
    /// Keeps the last path component (clients sometimes send `C:\dir\x.txt`), drops control
    /// and format characters (bidirectional overrides, zero-width characters) and trims the
    /// result to 255 bytes. `None` if nothing is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last
            .chars()
            .filter(|&c| !c.is_control() && !is_format_character(c))
            .collect();
        let mut name = cleaned.trim();
        if name.len() > MAX_LEN {
            let mut end = MAX_LEN;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            // Cutting can leave a space at the end; a second pass must change nothing.
            name = name[..end].trim_end();
        }
        match name {
            "" | "." | ".." => None,
            name => Some(Self(name.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{is_format_character, UploadName, MAX_LEN};
    use crate::domain::fuzzing::fuzz_config;
    use proptest::prelude::*;

    fn name(raw: &str) -> Option<String> {
        UploadName::sanitize(raw).map(UploadName::into_string)
    }

    #[test]
    fn keeps_only_a_harmless_last_component() {
        assert_eq!(name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(name("C:\\Users\\me\\a b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(name("bad\u{0}\nname").as_deref(), Some("badname"));
        assert_eq!(name(".."), None);
        assert_eq!(name("dir/"), None);
        assert_eq!(name(&"é".repeat(200)).unwrap().len(), 254);
    }

    #[test]
    fn bidirectional_overrides_and_invisible_characters_are_dropped() {
        assert_eq!(
            name("invoice\u{202E}gnp.exe").as_deref(),
            Some("invoicegnp.exe")
        );
        assert_eq!(
            name("\u{2067}a\u{200B}b\u{FEFF}.txt\u{2069}").as_deref(),
            Some("ab.txt")
        );
        assert_eq!(
            name("soft\u{AD}hyphen\u{E0041}").as_deref(),
            Some("softhyphen")
        );
        assert_eq!(name("\u{202E}\u{200D}"), None);
        // Letters, marks and spaces from other scripts stay.
        assert_eq!(
            name("naïve résumé 日本.txt").as_deref(),
            Some("naïve résumé 日本.txt")
        );
    }

    /// Found by `fuzz_sanitized_names_are_safe_and_stable`: a name cut at 255 bytes right after
    /// a space kept that space at its end, so sanitizing it again changed it.
    #[test]
    fn a_name_cut_after_a_space_has_no_trailing_space() {
        let raw = format!("{} tail", "a".repeat(254));
        let once = name(&raw).unwrap();
        assert_eq!(once, "a".repeat(254));
        assert_eq!(name(&once), Some(once));
    }

    proptest! {
        #![proptest_config(fuzz_config(256))]

        #[test]
        fn fuzz_sanitized_names_are_safe_and_stable(raw in any_name()) {
            if let Some(clean) = name(&raw) {
                prop_assert!(!clean.is_empty() && clean.len() <= MAX_LEN);
                prop_assert!(clean != "." && clean != "..");
                prop_assert!(!clean.contains(['/', '\\']));
                prop_assert!(!clean.chars().any(|c| c.is_control() || is_format_character(c)));
                prop_assert_eq!(clean.trim(), clean.as_str());
                prop_assert_eq!(name(&clean), Some(clean.clone()), "sanitizing twice changes nothing");
            }
        }
    }

    /// Names mixing path separators, spaces, controls, format characters and any other text.
    fn any_name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[a-zA-Z0-9._-]{1,8}",
            2 => Just(" ".to_owned()),
            1 => Just("/".to_owned()),
            1 => Just("\\".to_owned()),
            1 => Just("..".to_owned()),
            1 => prop::sample::select(vec!["\u{202E}", "\u{200B}", "\u{FEFF}", "\u{E0041}", "\u{AD}", "\u{2066}"]).prop_map(str::to_owned),
            1 => "[\\x00-\\x1f\\x7f]",
            2 => any::<String>(),
            1 => "é{1,60}",
            1 => "[a-z ]{240,260}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }
}
