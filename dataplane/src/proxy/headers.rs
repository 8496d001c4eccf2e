//! Header work on the way through: hop-by-hop removal (both ways), forwarding headers and the
//! route's edits (request only).

use std::net::IpAddr;

use http::Uri;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use super::tunnel;
use crate::table::HeaderEdits;

const VIA: HeaderValue = HeaderValue::from_static("1.1 gateway");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 7] = [
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
pub struct Forwarding<'a> {
    /// The client's address as an `X-Forwarded-For` element, formatted once per connection
    /// ([`client_address`]).
    pub client: &'a HeaderValue,
    /// Arrived on the TLS listener.
    pub tls: bool,
    /// Asks for an upgrade (WebSocket): its `Upgrade` header is kept.
    pub upgrade: bool,
}

/// `client` as an `X-Forwarded-For` element.
pub fn client_address(client: IpAddr) -> HeaderValue {
    // An address's text is always a valid header value.
    HeaderValue::try_from(client.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The client's request headers as every attempt sends them: hop-by-hop headers out (but
/// `TE: trailers` and an upgrade's `Upgrade` kept), forwarding headers and the route's `edits`
/// in. The Host is the client's (the URI's authority when it sent none) unless `edits` rewrite
/// it.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    uri: &Uri,
    forwarding: Forwarding<'_>,
    edits: &HeaderEdits,
) {
    let sent_host = headers.get(header::HOST).cloned();
    let hop_by_hop = has_hop_by_hop(headers);
    if hop_by_hop {
        let upgrade = forwarding
            .upgrade
            .then(|| tunnel::upgrade_headers(headers))
            .flatten();
        let trailers = accepts_trailers(headers);
        remove_hop_by_hop_always(headers);
        if trailers {
            // `TE: trailers` is what gRPC servers require; it says nothing about the connection.
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some((connection, protocol)) = upgrade {
            headers.insert(header::CONNECTION, connection);
            headers.insert(header::UPGRADE, protocol);
        }
    }
    let original_host = match sent_host {
        // A `Connection` header may have listed Host: put it back.
        Some(host) => {
            if hop_by_hop {
                headers.insert(header::HOST, host.clone());
            }
            Some(host)
        }
        None => {
            let host = uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            if let Some(host) = &host {
                headers.insert(header::HOST, host.clone());
            }
            host
        }
    };
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

/// Whether any hop-by-hop header is present. Most messages carry none, and one pass over the
/// names, which hashes nothing, is far cheaper than looking each of them up.
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

/// One of [`HOP_BY_HOP`], told by length first: most names fail there.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let name = name.as_str();
    match name.len() {
        2 => name == "te",
        7 => name == "trailer" || name == "upgrade",
        10 => name == "connection" || name == "keep-alive",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        _ => false,
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if has_hop_by_hop(headers) {
        remove_hop_by_hop_always(headers);
    }
}

fn remove_hop_by_hop_always(headers: &mut HeaderMap) {
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

/// Adds `X-Forwarded-*` and `Via` for a request from `client` (an address as
/// [`client_address`] formats it) whose Host was `original_host`; `tls` when it arrived on the
/// TLS listener.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    original_host: Option<&HeaderValue>,
    tls: bool,
) {
    append_to_list(headers, X_FORWARDED_FOR, client);
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    add_via(headers);
}

/// Appends this gateway to `Via`.
pub fn add_via(headers: &mut HeaderMap) {
    append_to_list(headers, header::VIA, &VIA);
}

/// Sets `name` to `value` after every earlier value, as one comma-separated line: one lookup,
/// and no allocation when the header is new.
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(entry) => {
            entry.insert(value.clone());
        }
        Entry::Occupied(mut entry) => {
            let mut list = Vec::new();
            for earlier in entry.iter().filter(|v| !v.is_empty()) {
                list.extend_from_slice(earlier.as_bytes());
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(value.as_bytes());
            // Made of valid values and ", ": valid too.
            if let Ok(joined) = HeaderValue::from_maybe_shared(bytes::Bytes::from(list)) {
                entry.insert(joined);
            }
        }
    }
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
    fn the_quick_hop_by_hop_test_knows_every_hop_by_hop_name() {
        assert!(HOP_BY_HOP.iter().all(is_hop_by_hop));
        for other in [header::HOST, header::CONTENT_TYPE, header::TRAILER.clone()] {
            assert_eq!(is_hop_by_hop(&other), HOP_BY_HOP.contains(&other));
        }
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-upgrade")));
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
            &client_address("192.0.2.7".parse().unwrap()),
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
        add_forwarding(
            &mut headers,
            &client_address("::1".parse().unwrap()),
            None,
            true,
        );
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
