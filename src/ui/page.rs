//! Which page a URL shows. The app has three pages and every link is a full page load, so the
//! URL is read once: from the request on the server, from `window.location` in the browser.
use crate::domain::{JobId, JobState};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    Home,
    History(HistoryQuery),
    Job(JobId),
    NotFound,
}

/// `/jobs?status=…&before=…`: the history's filter and where its page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub status: Option<JobState>,
    pub before: Option<JobId>,
}

impl HistoryQuery {
    /// The link to this view of the history.
    pub fn href(&self) -> String {
        let mut params = Vec::new();
        if let Some(status) = self.status {
            params.push(format!("status={status}"));
        }
        if let Some(before) = self.before {
            params.push(format!("before={before}"));
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
        let path = path.trim_end_matches('/');
        match path {
            "" => Page::Home,
            "/jobs" => {
                let mut history = HistoryQuery::default();
                for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
                    match key {
                        "status" => history.status = value.parse().ok(),
                        "before" => history.before = JobId::parse(value).ok(),
                        _ => {}
                    }
                }
                Page::History(history)
            }
            _ => match path.strip_prefix("/jobs/").map(JobId::parse) {
                Some(Ok(id)) => Page::Job(id),
                _ => Page::NotFound,
            },
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
        let query = format!("status=failed&before={id}&x=1");
        let expected = HistoryQuery {
            status: Some(JobState::Failed),
            before: Some(id),
        };
        assert_eq!(
            Page::from_url("/jobs", &query),
            Page::History(expected.clone())
        );
        assert_eq!(expected.href(), format!("/jobs?status=failed&before={id}"));
        assert_eq!(
            Page::from_url("/jobs/", "status=bogus"),
            Page::History(HistoryQuery::default())
        );
    }
}
