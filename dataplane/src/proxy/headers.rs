//! Header work on the way through: hop-by-hop removal (both ways), forwarding headers and the
//! route's edits (request only).

use std::net::IpAddr;

use http::Uri;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::tunnel;
use crate::table::HeaderEdits;

const VIA: HeaderValue = HeaderValue::from_static("1.1 gateway");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Who sent a request and how, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    pub client: IpAddr,
    /// Arrived on the TLS listener.
    pub tls: bool,
    /// Asks for an upgrade (WebSocket): its `Upgrade` header is kept.
    pub upgrade: bool,
}

/// The client's request headers as every attempt sends them: hop-by-hop headers out (but
/// `TE: trailers` and an upgrade's `Upgrade` kept), forwarding headers and the route's `edits`
/// in. The Host is the client's (the URI's authority when it sent none) unless `edits` rewrite
/// it.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    uri: &Uri,
    forwarding: Forwarding,
    edits: &HeaderEdits,
) {
    let original_host = match headers.get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let upgrade = forwarding
        .upgrade
        .then(|| tunnel::upgrade_headers(headers))
        .flatten();
    let trailers = accepts_trailers(headers);
    remove_hop_by_hop(headers);
    if trailers {
        // `TE: trailers` is what gRPC servers require; it says nothing about the connection.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some((connection, protocol)) = upgrade {
        headers.insert(header::CONNECTION, connection);
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(host) = &original_host {
        headers.insert(header::HOST, host.clone());
    }
    add_forwarding(
        headers,
        forwarding.client,
        original_host.as_ref(),
        forwarding.tls,
    );
    apply_edits(headers, edits);
}

/// A target's response headers as the client gets them: hop-by-hop headers out, `Via` in.
pub fn rewrite_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    add_via(headers);
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether the client's `TE` accepts trailers (gRPC's `TE: trailers`).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            coding
                .split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Adds `X-Forwarded-*` and `Via` for a request from `client` whose Host was `original_host`;
/// `tls` when it arrived on the TLS listener.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    original_host: Option<&HeaderValue>,
    tls: bool,
) {
    let forwarded_for = match joined(headers, &X_FORWARDED_FOR) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client.to_string(),
    };
    // The String becomes the value's bytes as it is, without a second copy.
    if let Ok(value) = HeaderValue::try_from(forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    add_via(headers);
}

/// Appends this gateway to `Via`.
pub fn add_via(headers: &mut HeaderMap) {
    let via = match joined(headers, &header::VIA) {
        Some(earlier) => HeaderValue::try_from(format!("{earlier}, 1.1 gateway")).unwrap_or(VIA),
        None => VIA,
    };
    headers.insert(header::VIA, via);
}

/// The route's `request_headers`: set (replacing every earlier value), then remove.
pub fn apply_edits(headers: &mut HeaderMap, edits: &HeaderEdits) {
    for (name, value) in &edits.set {
        headers.insert(name.clone(), value.clone());
    }
    for name in &edits.remove {
        headers.remove(name);
    }
}

/// All values of a header as one comma-separated list; `None` when absent or not text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_listed_in_connection_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "X-Other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn te_trailers_is_recognised_among_codings() {
        assert!(accepts_trailers(&map(&[("te", "trailers")])));
        assert!(accepts_trailers(&map(&[("te", "gzip, Trailers;q=1")])));
        assert!(!accepts_trailers(&map(&[("te", "gzip")])));
        assert!(!accepts_trailers(&HeaderMap::new()));
    }

    #[test]
    fn forwarding_headers_append_to_earlier_proxies() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("via", "1.0 edge"),
        ]);
        let host = HeaderValue::from_static("api.example.com");
        add_forwarding(
            &mut headers,
            "192.0.2.7".parse().unwrap(),
            Some(&host),
            false,
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "api.example.com");
        assert_eq!(headers["via"], "1.0 edge, 1.1 gateway");
    }

    #[test]
    fn forwarding_headers_start_fresh() {
        let mut headers = HeaderMap::new();
        add_forwarding(&mut headers, "::1".parse().unwrap(), None, true);
        assert_eq!(headers["x-forwarded-for"], "::1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["via"], "1.1 gateway");
        assert!(!headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn edits_set_replaces_then_remove() {
        let mut headers = map(&[("x-a", "1"), ("x-a", "2"), ("x-b", "1"), ("host", "old")]);
        let edits = HeaderEdits {
            set: vec![
                (
                    HeaderName::from_static("x-a"),
                    HeaderValue::from_static("3"),
                ),
                (header::HOST, HeaderValue::from_static("new.internal")),
            ],
            remove: vec![HeaderName::from_static("x-b")],
        };
        apply_edits(&mut headers, &edits);
        assert_eq!(
            headers.get_all("x-a").iter().collect::<Vec<_>>(),
            [&HeaderValue::from_static("3")]
        );
        assert!(!headers.contains_key("x-b"));
        assert_eq!(headers["host"], "new.internal");
    }
}
