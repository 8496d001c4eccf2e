//! What the proxy needs to know of gRPC: recognising a call, its deadline (`grpc-timeout`), and
//! the shape of errors the gateway itself answers a call with (HTTP 200, `grpc-status` and
//! `grpc-message` in a trailers-only response), so gRPC clients see a status, not a JSON body.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::ProxyBody;

const GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");

/// gRPC status codes the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Internal = 13,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    Unimplemented = 12,
    Unavailable = 14,
}

/// Whether a request is a gRPC call: `content-type: application/grpc` or `application/grpc+…`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|ct| {
        // Compared in place: every request with a body has a content type to look at.
        const GRPC: &[u8] = b"application/grpc";
        let ct = ct.as_bytes().trim_ascii();
        ct.get(..GRPC.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(GRPC))
            && matches!(ct.get(GRPC.len()), None | Some(b'+' | b';'))
    })
}

/// The call's deadline from `grpc-timeout` (`1*8DIGIT` then one of `H M S m u n`); `None`
/// when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A trailers-only gRPC error: HTTP 200 with the status in the headers and no body.
pub fn error_response(code: Code, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::default()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code as u8)));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", message);
    }
    response
}

/// `grpc-message` is percent-encoded UTF-8 (everything outside printable ASCII, and `%`).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn grpc_calls_are_recognised_by_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[(
            "content-type",
            "application/grpc-web"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_garbage() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("10u", Some(Duration::from_micros(10))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("1.5S", None),
            ("10x", None),
        ];
        for (value, expected) in cases {
            let map = headers(&[("grpc-timeout", value)]);
            assert_eq!(timeout(&map), expected, "{value}");
        }
    }

    #[test]
    fn errors_are_trailers_only_responses() {
        let response = error_response(Code::Unavailable, "no healthy targets: 100%");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(
            response.headers()["grpc-message"],
            "no healthy targets: 100%25"
        );
        assert_eq!(response.headers()["content-type"], "application/grpc");
    }
}
