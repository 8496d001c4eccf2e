//! Pagination shared by every list: `page_size` (default 100, at most 1000) and an opaque
//! `page_token` that continues after the last item of the previous page.
//!
//! Lists are keyset-paginated (after a name, before an id), so a page never repeats or skips
//! an item that existed throughout, however the list changes between pages. A token names the
//! list it came from, so one list's token is refused by another.

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One page request: how many items, and after which cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// The cursor of the last item already returned (a name, or an id), if any.
    pub after: Option<String>,
    scope: &'static str,
}

impl PageRequest {
    /// `scope` names the list (`routes`, `audit`, …); tokens from other lists are refused.
    pub fn new(scope: &'static str, page_size: u32, page_token: &str) -> Result<Self, ApiError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(scope, page_token).ok_or_else(|| {
                ApiError::BadRequest(
                    "page_token: not a token of this list (pass the next_page_token of the previous page unchanged)"
                        .into(),
                )
            })?)
        };
        Ok(PageRequest {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            after,
            scope,
        })
    }

    /// The first page of everything: for callers that want the whole list.
    #[cfg(test)]
    pub fn first(scope: &'static str, size: usize) -> Self {
        PageRequest {
            size,
            after: None,
            scope,
        }
    }

    /// Splits `items` (fetched with one extra) into this page and the token of the next one.
    pub fn finish<T>(&self, mut items: Vec<T>, cursor: impl Fn(&T) -> String) -> Page<T> {
        let next_page_token = if items.len() > self.size {
            items.truncate(self.size);
            items.last().map(|last| encode(self.scope, &cursor(last)))
        } else {
            None
        };
        Page {
            items,
            next_page_token: next_page_token.unwrap_or_default(),
        }
    }

    /// How many rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        i64::try_from(self.size.saturating_add(1)).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
}

fn encode(scope: &str, cursor: &str) -> String {
    hex::encode(format!("{scope}\n{cursor}"))
}

fn decode(scope: &str, token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (token_scope, cursor) = text.split_once('\n')?;
    (token_scope == scope).then(|| cursor.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(PageRequest::new("routes", 0, "").unwrap().size, 100);
        assert_eq!(PageRequest::new("routes", 5000, "").unwrap().size, 1000);
        assert_eq!(PageRequest::new("routes", 7, "").unwrap().size, 7);
    }

    #[test]
    fn tokens_round_trip_within_their_list_only() {
        let page = PageRequest::new("routes", 2, "").unwrap();
        let done = page.finish(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(done.items, ["a", "b"]);
        let next = PageRequest::new("routes", 2, &done.next_page_token).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        assert!(PageRequest::new("upstreams", 2, &done.next_page_token).is_err());
        assert!(PageRequest::new("routes", 2, "zz").is_err());
        let last = next.finish(vec!["c"], |s| s.to_string());
        assert_eq!(last.next_page_token, "");
    }
}
