//! `UploadName`: the client's name for a file, made safe to show. It is never used as a path.

/// Longest name kept, in bytes (the common file-system limit).
const MAX_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadName(String);

impl UploadName {
    /// Keeps the last path component (clients sometimes send `C:\dir\x.txt`), drops control
    /// characters and trims the result to 255 bytes. `None` if nothing is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
        let mut name = cleaned.trim();
        if name.len() > MAX_LEN {
            let mut end = MAX_LEN;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name = &name[..end];
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
    use super::UploadName;

    #[test]
    fn keeps_only_a_harmless_last_component() {
        let name = |raw| UploadName::sanitize(raw).map(UploadName::into_string);
        assert_eq!(name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(name("C:\\Users\\me\\a b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(name("bad\u{0}\nname").as_deref(), Some("badname"));
        assert_eq!(name(".."), None);
        assert_eq!(name("dir/"), None);
        assert_eq!(name(&"é".repeat(200)).unwrap().len(), 254);
    }
}
