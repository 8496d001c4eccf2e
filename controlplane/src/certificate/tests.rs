use super::*;

pub(crate) fn generated(
    names: &[&str],
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> Certificate {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Certificate {
        name: "site".into(),
        certificate_pem: cert.pem(),
        private_key_pem: key.serialize_pem(),
        sni: names.iter().map(|n| (*n).to_string()).collect(),
        ..Default::default()
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn a_valid_certificate_gets_its_not_after() {
    let cert = generated(&["example.com"], (2020, 1, 1), (2090, 6, 30));
    assert_eq!(check(&cert, now()).unwrap(), "2090-06-30T00:00:00Z");
}

#[test]
fn dates_before_2050_use_utc_time_and_parse_too() {
    let cert = generated(&["example.com"], (2021, 2, 28), (2049, 12, 31));
    assert_eq!(check(&cert, now()).unwrap(), "2049-12-31T00:00:00Z");
}

#[test]
fn an_expired_certificate_is_refused() {
    let cert = generated(&["example.com"], (2000, 1, 1), (2001, 1, 1));
    let (field, reason) = check(&cert, now()).unwrap_err();
    assert_eq!(field, "certificate_pem");
    assert!(
        reason.contains("expired at 2001-01-01T00:00:00Z"),
        "{reason}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let mut cert = generated(&["example.com"], (2020, 1, 1), (2090, 1, 1));
    cert.private_key_pem = generated(&["other.com"], (2020, 1, 1), (2090, 1, 1)).private_key_pem;
    let (field, reason) = check(&cert, now()).unwrap_err();
    assert_eq!(field, "private_key_pem");
    assert!(reason.contains("does not match"), "{reason}");
}

#[test]
fn garbage_pem_is_refused_without_quoting_the_key() {
    let mut cert = generated(&["example.com"], (2020, 1, 1), (2090, 1, 1));
    cert.private_key_pem =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".into();
    let (field, reason) = check(&cert, now()).unwrap_err();
    assert_eq!(field, "private_key_pem");
    assert!(!reason.contains("c2VjcmV0"), "{reason}");
    cert.certificate_pem = "not pem".into();
    assert_eq!(check(&cert, now()).unwrap_err().0, "certificate_pem");
}

#[test]
fn a_write_without_a_key_keeps_the_stored_key_of_the_same_chain() {
    let stored = generated(&["example.com"], (2020, 1, 1), (2090, 1, 1));
    let before = Config {
        certificates: vec![stored.clone()],
        ..Default::default()
    };
    let mut after = before.clone().redacted();
    after.certificates[0]
        .labels
        .insert("team".into(), "web".into());
    prepare(&before, &mut after, now()).unwrap();
    assert_eq!(
        after.certificates[0].private_key_pem,
        stored.private_key_pem
    );

    // A new chain needs its key.
    let mut renewed = before.clone();
    renewed.certificates[0] = generated(&["example.com"], (2020, 1, 1), (2091, 1, 1));
    renewed.certificates[0].private_key_pem.clear();
    let error = prepare(&before, &mut renewed, now()).unwrap_err();
    assert_eq!(error.violations()[0].field, "private_key_pem");
}
