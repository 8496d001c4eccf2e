//! Parsers for the small value languages of command-line flags: `HOST:PORT[=WEIGHT]`, `k=v`,
//! durations (`2s`, `1m30s`) and status ranges (`200-299`).
//!
//! Each parser returns a message that clap prints after `invalid value '…' for '--flag'`, so
//! it says what was wrong and what is expected, never a bare "invalid digit".

use std::time::Duration;

use gateway_proto::v1::{StatusRange, Target};

/// Largest target weight the control plane accepts.
const MAX_WEIGHT: u32 = 10_000;

/// The control plane's address: `http://host:port`.
pub fn server_url(value: &str) -> Result<String, String> {
    if value.starts_with("https://") {
        return Err("https:// is not supported by this build yet; use http://".into());
    }
    let Some(authority) = value.strip_prefix("http://") else {
        return Err("expected a URL such as http://127.0.0.1:9090".into());
    };
    if authority.trim_end_matches('/').is_empty() {
        return Err("the URL has no host (expected e.g. http://127.0.0.1:9090)".into());
    }
    Ok(value.to_owned())
}

/// `HOST:PORT` or `HOST:PORT=WEIGHT`; the weight defaults to 1.
pub fn target(value: &str) -> Result<Target, String> {
    let (address, weight) = match value.split_once('=') {
        Some((address, weight)) => {
            let weight = weight
                .parse::<u32>()
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w));
            let Some(weight) = weight else {
                return Err(format!(
                    "the weight after '=' must be a whole number from 1 to {MAX_WEIGHT} \
                     (expected HOST:PORT[=WEIGHT])"
                ));
            };
            (address, weight)
        }
        None => (value, 1),
    };
    gateway_proto::validate::check_host_port(address)
        .map_err(|reason| format!("{reason} (expected HOST:PORT[=WEIGHT])"))?;
    Ok(Target {
        address: address.to_owned(),
        weight,
    })
}

/// `key=value`; the value may be empty and may itself contain `=`.
pub fn key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, _)) if key.trim().is_empty() => Err("the key before '=' is empty".into()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err("expected KEY=VALUE".into()),
    }
}

/// A human duration such as `500ms`, `2s` or `1m30s`, as whole milliseconds.
pub fn duration_ms(value: &str) -> Result<u32, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{e} (expected a duration such as 500ms, 2s or 1m30s)"))?;
    millis(duration)
}

fn millis(duration: Duration) -> Result<u32, String> {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("durations are in whole milliseconds".into());
    }
    u32::try_from(duration.as_millis()).map_err(|_| "duration is too long".into())
}

/// An HTTP status code `200` or an inclusive range `200-299`.
pub fn status_range(value: &str) -> Result<StatusRange, String> {
    let (from, to) = value.split_once('-').unwrap_or((value, value));
    let code = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an HTTP status code from 100 to 599 (expected 200 or 200-299)"
                )
            })
    };
    let (from, to) = (code(from)?, code(to)?);
    if from > to {
        return Err(format!(
            "the range {from}-{to} is empty (expected FROM-TO with FROM <= TO)"
        ));
    }
    Ok(StatusRange { from, to })
}

/// Formats milliseconds the way the flags accept them; 0 reads as `default`.
pub fn format_ms(ms: u32) -> String {
    if ms == 0 {
        return "default".into();
    }
    humantime::format_duration(Duration::from_millis(u64::from(ms))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert!(server_url("http://127.0.0.1:9090").is_ok());
        assert!(server_url("http://cp.internal:9090/").is_ok());
        assert!(server_url("127.0.0.1:9090").is_err());
        assert!(server_url("http://").is_err());
        assert!(
            server_url("https://cp:9090")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn target_weight_defaults_to_one() {
        let t = target("10.0.0.1:8080").unwrap();
        assert_eq!((t.address.as_str(), t.weight), ("10.0.0.1:8080", 1));
        let t = target("10.0.0.1:8080=3").unwrap();
        assert_eq!((t.address.as_str(), t.weight), ("10.0.0.1:8080", 3));
        let t = target("[::1]:443=10000").unwrap();
        assert_eq!((t.address.as_str(), t.weight), ("[::1]:443", 10_000));
        let t = target("backend.internal:80").unwrap();
        assert_eq!(t.address, "backend.internal:80");
    }

    #[test]
    fn target_rejects_bad_input() {
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "10.0.0.1:80=0",
            "10.0.0.1:80=10001",
            "10.0.0.1:80=x",
            "10.0.0.1:80=",
            "bad_host:80",
            ":80",
        ] {
            let err = target(bad).unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn key_value_splits_on_first_equals() {
        assert_eq!(
            key_value("team=web").unwrap(),
            ("team".into(), "web".into())
        );
        assert_eq!(key_value("x-a=b=c").unwrap(), ("x-a".into(), "b=c".into()));
        assert_eq!(
            key_value("empty=").unwrap(),
            ("empty".into(), String::new())
        );
        assert!(key_value("novalue").is_err());
        assert!(key_value("=v").is_err());
    }

    #[test]
    fn durations_are_milliseconds() {
        assert_eq!(duration_ms("2s"), Ok(2000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1m 30s"), Ok(90_000));
        assert_eq!(duration_ms("1m30s"), Ok(90_000));
        assert_eq!(duration_ms("0s"), Ok(0));
        assert!(
            duration_ms("5")
                .unwrap_err()
                .contains("expected a duration")
        );
        assert!(duration_ms("fast").is_err());
        assert!(
            duration_ms("1500us")
                .unwrap_err()
                .contains("whole milliseconds")
        );
        assert!(duration_ms("100days").unwrap_err().contains("too long"));
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            status_range("200-299"),
            Ok(StatusRange { from: 200, to: 299 })
        );
        assert_eq!(status_range("204"), Ok(StatusRange { from: 204, to: 204 }));
        assert!(status_range("299-200").unwrap_err().contains("empty"));
        assert!(status_range("99").is_err());
        assert!(status_range("600").is_err());
        assert!(status_range("2xx").is_err());
        assert!(status_range("200-").is_err());
    }

    #[test]
    fn formats_durations_back() {
        assert_eq!(format_ms(0), "default");
        assert_eq!(format_ms(2000), "2s");
        assert_eq!(format_ms(90_000), "1m 30s");
    }
}

/// `--hash-on`: `header:NAME`, `cookie:NAME`, `client-ip` or `path`.
pub fn hash_on(value: &str) -> Result<gateway_proto::v1::HashOn, String> {
    use gateway_proto::v1::hash_on::Source;
    let source = match value.split_once(':') {
        Some(("header", name)) if !name.is_empty() => Source::Header(name.to_ascii_lowercase()),
        Some(("cookie", name)) if !name.is_empty() => Source::Cookie(name.to_owned()),
        None if value == "client-ip" => Source::ClientIp(true),
        None if value == "path" => Source::Path(true),
        _ => return Err("expected header:NAME, cookie:NAME, client-ip or path".into()),
    };
    Ok(gateway_proto::v1::HashOn {
        source: Some(source),
    })
}

#[cfg(test)]
mod hash_on_tests {
    use super::hash_on;
    use gateway_proto::v1::hash_on::Source;

    #[test]
    fn hash_keys_parse() {
        assert_eq!(
            hash_on("header:X-User").unwrap().source,
            Some(Source::Header("x-user".into()))
        );
        assert_eq!(
            hash_on("cookie:sid").unwrap().source,
            Some(Source::Cookie("sid".into()))
        );
        assert_eq!(
            hash_on("client-ip").unwrap().source,
            Some(Source::ClientIp(true))
        );
        assert_eq!(hash_on("path").unwrap().source, Some(Source::Path(true)));
        for bad in ["header:", "ip", "cookie", "query:x"] {
            assert!(hash_on(bad).is_err(), "{bad}");
        }
    }
}
