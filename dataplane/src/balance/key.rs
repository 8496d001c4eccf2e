//! What consistent hashing hashes: a header, a cookie, the client's IP address or the path.
//!
//! Reading a key does not allocate: cookies are found by splitting the `Cookie` headers in
//! place. A request without the key has none, and the balancer then picks at random.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, Uri, header};

use super::hash_bytes;

/// Seeds for the key hash; the ring's and maglev's own seeds differ, so the structures are
/// independent of the key hash.
const KEY_SEED: u64 = 0x6761_7465_7761_796b; // "gatewayk"

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(Box<str>),
    ClientIp,
    Path,
}

impl HashKey {
    /// The request's key hash, if it has the key.
    pub fn hash(&self, uri: &Uri, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
        match self {
            HashKey::Header(name) => {
                let value = headers.get(name)?;
                Some(hash_bytes(value.as_bytes(), KEY_SEED))
            }
            HashKey::Cookie(name) => {
                cookie(headers, name).map(|value| hash_bytes(value.as_bytes(), KEY_SEED))
            }
            HashKey::ClientIp => Some(match client.to_canonical() {
                IpAddr::V4(v4) => hash_bytes(&v4.octets(), KEY_SEED),
                IpAddr::V6(v6) => hash_bytes(&v6.octets(), KEY_SEED),
            }),
            HashKey::Path => Some(hash_bytes(uri.path().as_bytes(), KEY_SEED)),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn keys_come_from_headers_cookies_ip_and_path() {
        let uri: Uri = "/cart/items?x=1".parse().unwrap();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let map = headers(&[
            ("x-user", "alice"),
            ("cookie", "theme=dark; session=abc123"),
            ("cookie", "other=1"),
        ]);
        let header = HashKey::Header(HeaderName::from_static("x-user"));
        assert_eq!(
            header.hash(&uri, &map, ip),
            Some(hash_bytes(b"alice", KEY_SEED))
        );
        let session = HashKey::Cookie("session".into());
        assert_eq!(
            session.hash(&uri, &map, ip),
            Some(hash_bytes(b"abc123", KEY_SEED))
        );
        assert_eq!(
            HashKey::Cookie("other".into()).hash(&uri, &map, ip),
            Some(hash_bytes(b"1", KEY_SEED))
        );
        assert_eq!(
            HashKey::Path.hash(&uri, &map, ip),
            Some(hash_bytes(b"/cart/items", KEY_SEED))
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            HashKey::ClientIp.hash(&uri, &map, ip),
            HashKey::ClientIp.hash(&uri, &map, mapped),
            "an IPv4-mapped address is the same client"
        );
    }

    #[test]
    fn a_missing_key_is_none() {
        let uri: Uri = "/".parse().unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let map = headers(&[("cookie", "theme=dark")]);
        assert_eq!(
            HashKey::Header(HeaderName::from_static("x-user")).hash(&uri, &map, ip),
            None
        );
        assert_eq!(HashKey::Cookie("session".into()).hash(&uri, &map, ip), None);
    }
}
