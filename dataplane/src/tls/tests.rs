use super::*;

/// A self-signed certificate for `names`, as a resource.
pub fn self_signed(name: &str, names: &[&str]) -> v1::Certificate {
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names.clone()).unwrap();
    v1::Certificate {
        name: name.into(),
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
        sni: names,
        ..Default::default()
    }
}

fn table(certificates: &[v1::Certificate]) -> CertificateTable {
    let keys = certificates
        .iter()
        .map(|c| (c.name.clone(), Arc::new(certified_key(c).unwrap())))
        .collect();
    CertificateTable::new(certificates, keys)
}

fn same(a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>) -> bool {
    a.cert == b.cert
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let certificates = [
        self_signed("apex", &["example.com"]),
        self_signed("api", &["api.example.com"]),
        self_signed("wild", &["*.example.com"]),
    ];
    let table = table(&certificates);
    let apex = table.get("apex").unwrap();
    let api = table.get("api").unwrap();
    let wild = table.get("wild").unwrap();
    assert!(same(&table.pick(Some("api.example.com")).unwrap(), api));
    assert!(same(&table.pick(Some("API.Example.com.")).unwrap(), api));
    assert!(same(&table.pick(Some("www.example.com")).unwrap(), wild));
    // A wildcard covers one label only.
    assert!(same(&table.pick(Some("a.b.example.com")).unwrap(), apex));
    assert!(same(&table.pick(Some("example.com")).unwrap(), apex));
    // No SNI, or an unknown name: the default (the first by name).
    assert!(same(&table.pick(None).unwrap(), apex));
    assert!(same(&table.pick(Some("other.org")).unwrap(), apex));
}

#[test]
fn a_certificate_labelled_default_is_the_default() {
    let mut chosen = self_signed("zzz", &["z.example.com"]);
    chosen.labels.insert("default".into(), "true".into());
    let table = table(&[self_signed("aaa", &["a.example.com"]), chosen]);
    assert!(same(
        &table.pick(Some("unknown.example.org")).unwrap(),
        table.get("zzz").unwrap()
    ));
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let mut one = self_signed("one", &["one.example.com"]);
    let other = self_signed("other", &["other.example.com"]);
    one.private_key_pem = other.private_key_pem;
    let (field, error) = certified_key(&one).unwrap_err();
    assert_eq!(field, "private_key_pem");
    assert!(error.contains("does not match"), "{error}");
}

#[test]
fn the_provider_prefers_post_quantum_key_exchange() {
    let provider = provider();
    let first = provider.kx_groups.first().unwrap().name();
    assert_eq!(first, rustls::NamedGroup::X25519MLKEM768);
}
