//! `x-request-id`: kept when the client sent one, generated when it did not, sent upstream and
//! returned downstream, and written in the access log.
//!
//! A generated id is 32 hex digits: a random per-process prefix and a counter. Unique across
//! processes (with overwhelming probability) and across restarts, and cheap: one atomic add and
//! no system call per request.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longer incoming ids are replaced: they only bloat logs and headers.
const MAX_LEN: usize = 200;

#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            prefix: rand::random(),
            next: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The request's id: the client's if it sent a usable one, else a new one set in `headers`.
    pub fn ensure(&self, headers: &mut HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get(&X_REQUEST_ID)
            && !id.is_empty()
            && id.len() <= MAX_LEN
        {
            return id.clone();
        }
        let id = self.generate();
        headers.insert(X_REQUEST_ID, id.clone());
        id
    }

    pub fn generate(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        hex(self.prefix, &mut text[..16]);
        hex(n, &mut text[16..]);
        // Hex digits are always a valid header value.
        let mut id = HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"));
        // Unique per request: an HTTP/2 encoder that indexed it would evict useful entries
        // from its table for a value never sent again (HPACK "never indexed").
        id.set_sensitive(true);
        id
    }
}

fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * i;
        *byte = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex_with_a_shared_prefix() {
        let ids = RequestIds::default();
        let (a, b) = (ids.generate(), ids.generate());
        assert_ne!(a, b);
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16]);
        assert_eq!(&b[16..], "0000000000000001");
    }

    #[test]
    fn generated_ids_are_never_indexed_by_hpack() {
        assert!(RequestIds::default().generate().is_sensitive());
    }

    #[test]
    fn a_clients_id_is_kept_and_a_missing_one_is_set() {
        let ids = RequestIds::default();
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(ids.ensure(&mut headers), "abc-123");

        let mut headers = HeaderMap::new();
        let id = ids.ensure(&mut headers);
        assert_eq!(headers.get(X_REQUEST_ID), Some(&id));

        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static(""));
        let id = ids.ensure(&mut headers);
        assert_eq!(id.len(), 32);
    }
}
