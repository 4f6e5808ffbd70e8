//! Which page a URL shows, and the one table of page paths: the server renders each path in
//! it, and `Page::from_url` reads a URL against it. Every link is a full page load, so the URL
//! is read once: from the request on the server, from `window.location` in the browser.
use crate::domain::{AccountName, JobId, JobState};

/// The kinds of page, one per path in `PAGES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Home,
    History,
    Job,
    Accounts,
    Webhooks,
}

/// Every page path, in the router's syntax (`{name}` is one path segment), with its kind.
pub const PAGES: [(&str, PageKind); 5] = [
    ("/", PageKind::Home),
    ("/jobs", PageKind::History),
    ("/jobs/{job_id}", PageKind::Job),
    ("/accounts", PageKind::Accounts),
    ("/webhooks", PageKind::Webhooks),
];

/// The segments of `path` that fill the `{…}` segments of `pattern`, when it matches. Trailing
/// slashes are ignored on both sides.
fn match_path<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut wanted = pattern.trim_end_matches('/').split('/');
    let mut given = path.trim_end_matches('/').split('/');
    let mut captured = Vec::new();
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(captured),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                captured.push(g)
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    Home,
    History(HistoryQuery),
    Job(JobId),
    Accounts,
    Webhooks,
    NotFound,
}

/// `/jobs?status=…&owner=…&before=…`: the history's filters and where its page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub status: Option<JobState>,
    /// Only this account's jobs (what an admin may ask; a member sees only its own anyway).
    pub owner: Option<AccountName>,
    pub before: Option<JobId>,
    /// Search text: file names and metadata.
    pub q: Option<String>,
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads a form-encoded value (`+` is a space); malformed escapes are kept as they are.
fn decode_query_value(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl HistoryQuery {
    /// The link to this view of the history.
    pub fn href(&self) -> String {
        let mut params = Vec::new();
        if let Some(status) = self.status {
            params.push(format!("status={status}"));
        }
        // Account names are letters, digits, `-` and `_`: nothing to escape.
        if let Some(owner) = &self.owner {
            params.push(format!("owner={owner}"));
        }
        if let Some(before) = self.before {
            params.push(format!("before={before}"));
        }
        if let Some(q) = self.q.as_deref().filter(|q| !q.is_empty()) {
            params.push(format!("q={}", encode_query_value(q)));
        }
        if params.is_empty() {
            "/jobs".to_owned()
        } else {
            format!("/jobs?{}", params.join("&"))
        }
    }
}

impl Page {
    /// The page for `path` and its `query` (without the `?`). Unknown filter values are
    /// ignored rather than refused: a stale link still shows the history.
    pub fn from_url(path: &str, query: &str) -> Page {
        let found = PAGES
            .iter()
            .find_map(|(pattern, kind)| Some((*kind, match_path(pattern, path)?)));
        match found {
            Some((PageKind::Home, _)) => Page::Home,
            Some((PageKind::History, _)) => {
                let mut history = HistoryQuery::default();
                for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
                    match key {
                        "status" => history.status = value.parse().ok(),
                        "owner" => history.owner = AccountName::parse(value).ok(),
                        "before" => history.before = JobId::parse(value).ok(),
                        "q" => {
                            history.q = Some(decode_query_value(value)).filter(|q| !q.is_empty())
                        }
                        _ => {}
                    }
                }
                Page::History(history)
            }
            Some((PageKind::Job, captured)) => match captured.first().map(|id| JobId::parse(id)) {
                Some(Ok(id)) => Page::Job(id),
                _ => Page::NotFound,
            },
            Some((PageKind::Accounts, _)) => Page::Accounts,
            Some((PageKind::Webhooks, _)) => Page::Webhooks,
            None => Page::NotFound,
        }
    }

    /// The page this document is for.
    pub fn current() -> Page {
        #[cfg(feature = "ssr")]
        {
            let uri = leptos::prelude::use_context::<axum::http::request::Parts>()
                .map(|parts| parts.uri)
                .unwrap_or_default();
            Page::from_url(uri.path(), uri.query().unwrap_or(""))
        }
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        {
            let location = web_sys::window().map(|window| window.location());
            let path = location.as_ref().and_then(|l| l.pathname().ok());
            let search = location.as_ref().and_then(|l| l.search().ok());
            Page::from_url(
                path.as_deref().unwrap_or("/"),
                search.as_deref().unwrap_or("").trim_start_matches('?'),
            )
        }
        #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
        Page::Home
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_pages() {
        let id = JobId::new();
        assert_eq!(Page::from_url("/", ""), Page::Home);
        assert_eq!(Page::from_url(&format!("/jobs/{id}"), ""), Page::Job(id));
        assert_eq!(Page::from_url("/jobs/not-an-id", ""), Page::NotFound);
        assert_eq!(Page::from_url("/elsewhere", ""), Page::NotFound);
        assert_eq!(Page::from_url("/accounts", ""), Page::Accounts);
        assert_eq!(Page::from_url("/accounts/", "x=1"), Page::Accounts);
        assert_eq!(Page::from_url("/accounts/alice", ""), Page::NotFound);
        assert_eq!(Page::from_url("/webhooks", ""), Page::Webhooks);
        let query = format!("status=failed&owner=ci-bot_2&before={id}&x=1");
        let expected = HistoryQuery {
            status: Some(JobState::Failed),
            owner: Some(AccountName::parse("ci-bot_2").unwrap()),
            before: Some(id),
            q: None,
        };
        assert_eq!(
            Page::from_url("/jobs", &query),
            Page::History(expected.clone())
        );
        assert_eq!(
            expected.href(),
            format!("/jobs?status=failed&owner=ci-bot_2&before={id}")
        );
        assert_eq!(
            Page::from_url("/jobs/", "status=bogus&owner=not%20a%20name"),
            Page::History(HistoryQuery::default())
        );
    }

    #[test]
    fn a_search_reads_back_from_its_link() {
        let query = HistoryQuery {
            q: Some("50% off & more/ü".to_owned()),
            ..HistoryQuery::default()
        };
        let href = query.href();
        assert_eq!(href, "/jobs?q=50%25%20off%20%26%20more%2F%C3%BC");
        let (path, search) = href.split_once('?').unwrap();
        assert_eq!(Page::from_url(path, search), Page::History(query));
        assert_eq!(
            Page::from_url("/jobs", "q=a+b%2"),
            Page::History(HistoryQuery {
                q: Some("a b%2".to_owned()),
                ..HistoryQuery::default()
            })
        );
    }

    #[test]
    fn trailing_slashes_and_extra_segments_are_read_as_before_the_table() {
        let id = JobId::new();
        assert_eq!(Page::from_url("", ""), Page::Home);
        assert_eq!(Page::from_url("//", ""), Page::Home);
        assert_eq!(Page::from_url(&format!("/jobs/{id}/"), ""), Page::Job(id));
        assert_eq!(Page::from_url(&format!("/jobs/{id}/x"), ""), Page::NotFound);
        assert_eq!(Page::from_url(&format!("/jobs//{id}"), ""), Page::NotFound);
        assert_eq!(Page::from_url("/jobsx", ""), Page::NotFound);
    }
}
