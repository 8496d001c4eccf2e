//! TLS, both ways: the certificates the TLS listener serves, chosen by SNI from the table in
//! service at each handshake (so a certificate change applies to the next handshake and never
//! touches open connections), and the client configs upstreams use to reach their targets.
//!
//! The provider is rustls's aws-lc-rs with its default key-exchange order, which puts the
//! post-quantum hybrid X25519MLKEM768 first; protocol versions are TLS 1.3 and 1.2 only.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use gateway_proto::v1;
use gateway_proto::validate::{pem_certificates, pem_private_key};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;

use crate::app::Gateway;

/// ALPN protocols of the TLS listener, preferred first.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider of every TLS config here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate with its key, ready for handshakes; an error names the field at fault.
pub fn certified_key(
    certificate: &v1::Certificate,
) -> Result<CertifiedKey, (&'static str, String)> {
    let chain =
        pem_certificates(&certificate.certificate_pem).map_err(|e| ("certificate_pem", e))?;
    let key = pem_private_key(&certificate.private_key_pem).map_err(|e| ("private_key_pem", e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => (
            "private_key_pem",
            "the private key does not match the certificate".to_string(),
        ),
        other => (
            "private_key_pem",
            format!("unusable certificate or key: {other}"),
        ),
    })
}

/// The server certificates of a table, by the names they serve.
#[derive(Default)]
pub struct CertificateTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Every certificate by resource name (for upstream client certificates).
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for CertificateTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("CertificateTable")
            .field("certificates", &names)
            .finish_non_exhaustive()
    }
}

impl CertificateTable {
    /// Builds the table; `certificates` in name order. The default is the one labelled
    /// `default=true`, else the first.
    pub fn new(
        certificates: &[v1::Certificate],
        mut keys: HashMap<String, Arc<CertifiedKey>>,
    ) -> CertificateTable {
        let mut table = CertificateTable::default();
        let (mut first, mut labelled) = (None, None);
        for certificate in certificates {
            let Some(key) = keys.remove(&certificate.name) else {
                continue;
            };
            for name in &certificate.sni {
                match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.insert(parent.to_string(), Arc::clone(&key)),
                    None => table.exact.insert(name.clone(), Arc::clone(&key)),
                };
            }
            let is_default = certificate.labels.get("default").map(String::as_str) == Some("true");
            if is_default && labelled.is_none() {
                labelled = Some(Arc::clone(&key));
            }
            if first.is_none() {
                first = Some(Arc::clone(&key));
            }
            table.by_name.insert(certificate.name.clone(), key);
        }
        table.default = labelled.or(first);
        table
    }

    /// The certificate for a handshake naming `sni`: exact name, then wildcard, then default.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = sni.and_then(|sni| {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&sni).cloned().or_else(|| {
                let (_, parent) = sni.split_once('.')?;
                self.wildcard.get(parent).cloned()
            })
        });
        by_name.or_else(|| self.default.clone())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// Picks each handshake's certificate from the table in service.
#[derive(Debug)]
struct SniResolver {
    gateway: Arc<Gateway>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let active = self.gateway.active()?;
        let picked = active.table.certificates().pick(hello.server_name());
        if picked.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate to serve");
        }
        picked
    }
}

/// The TLS listener's config: TLS 1.3 and 1.2, ALPN h2 and http/1.1, certificates by SNI.
pub fn server_config(gateway: Arc<Gateway>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { gateway }));
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How an upstream's targets are reached over TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// The name to send and verify; `None` means the target's host.
    pub server_name: Option<ServerName<'static>>,
}

/// The client config for `tls`, offering `alpn`; `client` is the certificate to present.
pub fn upstream_tls(
    tls: &v1::UpstreamTls,
    alpn: &[&[u8]],
    client: Option<&v1::Certificate>,
) -> Result<UpstreamTls, (&'static str, String)> {
    let mut roots = RootCertStore::empty();
    if tls.ca_pem.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for certificate in pem_certificates(&tls.ca_pem).map_err(|e| ("tls.ca_pem", e))? {
            roots
                .add(certificate)
                .map_err(|e| ("tls.ca_pem", format!("not a usable CA certificate: {e}")))?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("tls", e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(certificate) => {
            let field = "tls.client_certificate";
            let chain = pem_certificates(&certificate.certificate_pem).map_err(|e| (field, e))?;
            let key = pem_private_key(&certificate.private_key_pem).map_err(|e| (field, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| (field, e.to_string()))?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let server_name = if tls.sni.is_empty() {
        None
    } else {
        Some(
            ServerName::try_from(tls.sni.clone())
                .map_err(|e| ("tls.sni", format!("{:?}: {e}", tls.sni)))?,
        )
    };
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
    })
}

#[cfg(test)]
mod tests;
