//! Which HTTP/1.1 requests are refused before routing because a next hop could frame them
//! differently (request smuggling): 400 and the connection closed, never forwarded.
//!
//! hyper already refuses invalid names, obs-fold, bad chunking, conflicting `Content-Length`s and
//! a `Transfer-Encoding` not ending in chunked. These rules cover what it lets through, from the
//! parsed head alone: each looks at a few headers, and none allocates. What hyper hides from the
//! parsed head is found below it, in the connection's bytes, by [`super::head_audit`]: with both
//! `Transfer-Encoding` and `Content-Length` hyper drops the length, and of identical duplicate
//! `Content-Length`s it keeps one; the audit's verdict reaches [`super::Proxy`] in
//! [`super::Downstream::refused`] and is answered by the same path as these rules. The same two
//! checks stay here, cheap, for requests that did not come through hyper's parser (built in
//! process, as in the tests).

use http::header::{self, HeaderMap};
use http::{Method, Request, Version};

/// Why `request` must be refused, if it must. HTTP/2 frames bodies itself and is not checked.
/// `allow_get_body` lets a body on GET through (for APIs that search with one, such as
/// Elasticsearch's `_search`); it is still framed by one `Content-Length` or one `chunked`.
pub fn refusal<B>(request: &Request<B>, allow_get_body: bool) -> Option<&'static str> {
    if request.version() >= Version::HTTP_2 {
        return None;
    }
    head_refusal(request.method(), request.headers(), allow_get_body)
}

fn head_refusal(
    method: &Method,
    headers: &HeaderMap,
    allow_get_body: bool,
) -> Option<&'static str> {
    if headers.keys().any(|name| imitates_framing(name.as_str())) {
        return Some("a header name imitating Transfer-Encoding or Content-Length");
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let chunked = match (codings.next(), codings.next()) {
        (None, _) => false,
        // Only `chunked`, once: other codings are legal but unused by clients, and a next hop
        // that reads another line or coding first would frame the body differently.
        (Some(value), None)
            if value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked") =>
        {
            true
        }
        _ => return Some("Transfer-Encoding other than a single chunked"),
    };
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Some("more than one Content-Length");
    }
    if chunked && length.is_some() {
        return Some("both Transfer-Encoding and Content-Length");
    }
    // GET and HEAD bodies have no meaning (RFC 9110 §9.3.1–2), and servers that ignore them read
    // the body as the next request.
    let has_body = chunked || length.is_some_and(|value| value.as_bytes() != b"0");
    if has_body && (method == Method::HEAD || (method == Method::GET && !allow_get_body)) {
        return Some("a body on GET or HEAD");
    }
    None
}

/// `Transfer_Encoding`, `content__length`, `Transfer---Encoding`…: names a next hop may
/// normalise into a framing header although they are other names here.
fn imitates_framing(name: &str) -> bool {
    const TRANSFER_ENCODING: &[u8] = b"transferencoding";
    const CONTENT_LENGTH: &[u8] = b"contentlength";
    let bytes = name.as_bytes();
    // Names are lowercase; the cheap tests first.
    if bytes.len() < CONTENT_LENGTH.len()
        || !matches!(bytes[0], b't' | b'c')
        || name == "transfer-encoding"
        || name == "content-length"
    {
        return false;
    }
    let letters = || bytes.iter().filter(|&&b| b != b'-' && b != b'_');
    letters().eq(TRANSFER_ENCODING) || letters().eq(CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use http::header::{HeaderName, HeaderValue};

    use super::*;

    fn check(method: Method, pairs: &[(&'static str, &'static str)]) -> Option<&'static str> {
        let mut request = Request::builder().method(method);
        for (name, value) in pairs {
            request = request.header(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        refusal(&request.body(()).unwrap(), false)
    }

    fn post(pairs: &[(&'static str, &'static str)]) -> Option<&'static str> {
        check(Method::POST, pairs)
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(post(&[("content-length", "5")]), None);
        assert_eq!(post(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(post(&[("transfer-encoding", " Chunked ")]), None);
        assert_eq!(check(Method::GET, &[]), None);
        assert_eq!(check(Method::GET, &[("content-length", "0")]), None);
        assert_eq!(post(&[("x_custom", "1"), ("content-type", "a/b")]), None);
    }

    #[test]
    fn names_imitating_framing_headers_are_refused() {
        for name in [
            "transfer_encoding",
            "content_length",
            "transfer---encoding",
            "transfer___encoding",
            "content-_length",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(imitates_framing(name.as_str()), "{name}");
        }
        assert_eq!(
            post(&[("transfer_encoding", "chunked")]),
            Some("a header name imitating Transfer-Encoding or Content-Length")
        );
        assert!(!imitates_framing("content-type"));
        assert!(!imitates_framing("transfer-encoding"));
    }

    #[test]
    fn transfer_encoding_must_be_one_chunked() {
        let refused = Some("Transfer-Encoding other than a single chunked");
        assert_eq!(post(&[("transfer-encoding", "gzip, chunked")]), refused);
        assert_eq!(post(&[("transfer-encoding", "chunked, chunked")]), refused);
        assert_eq!(
            post(&[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ]),
            refused
        );
        assert_eq!(post(&[("transfer-encoding", "identity")]), refused);
    }

    #[test]
    fn several_lengths_or_a_length_with_chunked_are_refused() {
        assert_eq!(
            post(&[("content-length", "5"), ("content-length", "5")]),
            Some("more than one Content-Length")
        );
        assert_eq!(
            post(&[("transfer-encoding", "chunked"), ("content-length", "5")]),
            Some("both Transfer-Encoding and Content-Length")
        );
    }

    #[test]
    fn get_and_head_with_a_body_are_refused() {
        for method in [Method::GET, Method::HEAD] {
            for header in [("content-length", "22"), ("transfer-encoding", "chunked")] {
                assert_eq!(
                    check(method.clone(), &[header]),
                    Some("a body on GET or HEAD"),
                    "{method} {header:?}"
                );
            }
        }
    }

    #[test]
    fn a_get_body_passes_when_the_listener_allows_it_but_not_a_head_body() {
        let request = |method: Method| {
            Request::builder()
                .method(method)
                .header("content-length", "22")
                .body(())
                .unwrap()
        };
        assert_eq!(refusal(&request(Method::GET), true), None);
        assert_eq!(
            refusal(&request(Method::HEAD), true),
            Some("a body on GET or HEAD")
        );
        let both = Request::builder()
            .method(Method::GET)
            .header("transfer-encoding", "chunked")
            .header("content-length", "22")
            .body(())
            .unwrap();
        assert_eq!(
            refusal(&both, true),
            Some("both Transfer-Encoding and Content-Length")
        );
    }

    #[test]
    fn http2_is_left_to_its_own_framing() {
        let request = Request::builder()
            .version(Version::HTTP_2)
            .header("transfer_encoding", "chunked")
            .body(())
            .unwrap();
        assert_eq!(refusal(&request, false), None);
    }
}
