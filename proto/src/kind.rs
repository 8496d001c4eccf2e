//! The kinds of resources, and how they are named in errors, REST paths and apply files.

use std::fmt;

use crate::v1::{Certificate, Config, HealthCheckPolicy, Route, Upstream};

/// A kind of configuration resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Certificate,
    HealthCheck,
    Upstream,
    Route,
}

impl Kind {
    /// In dependency order: a kind only refers to kinds before it.
    pub const ALL: [Kind; 4] = [
        Kind::Certificate,
        Kind::HealthCheck,
        Kind::Upstream,
        Kind::Route,
    ];

    /// Singular name used in error messages: `route/web-root`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Certificate => "certificate",
            Kind::HealthCheck => "health-check",
            Kind::Upstream => "upstream",
            Kind::Route => "route",
        }
    }

    /// The `kind:` value of an apply file document.
    pub fn document_kind(self) -> &'static str {
        match self {
            Kind::Certificate => "Certificate",
            Kind::HealthCheck => "HealthCheckPolicy",
            Kind::Upstream => "Upstream",
            Kind::Route => "Route",
        }
    }

    pub fn from_document_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.document_kind() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<kind>/<name>`, the way every error names a resource.
pub fn resource_ref(kind: Kind, name: &str) -> String {
    format!("{kind}/{name}")
}

/// Something stored in a [`Config`] under a unique name.
pub trait Resource: Clone + PartialEq + prost::Message + Default + 'static {
    const KIND: Kind;
    fn name(&self) -> &str;
    fn list(config: &Config) -> &Vec<Self>;
    fn list_mut(config: &mut Config) -> &mut Vec<Self>;
}

impl Resource for Upstream {
    const KIND: Kind = Kind::Upstream;
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &Config) -> &Vec<Self> {
        &config.upstreams
    }
    fn list_mut(config: &mut Config) -> &mut Vec<Self> {
        &mut config.upstreams
    }
}

impl Resource for Route {
    const KIND: Kind = Kind::Route;
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &Config) -> &Vec<Self> {
        &config.routes
    }
    fn list_mut(config: &mut Config) -> &mut Vec<Self> {
        &mut config.routes
    }
}

impl Resource for HealthCheckPolicy {
    const KIND: Kind = Kind::HealthCheck;
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &Config) -> &Vec<Self> {
        &config.health_checks
    }
    fn list_mut(config: &mut Config) -> &mut Vec<Self> {
        &mut config.health_checks
    }
}

impl Resource for Certificate {
    const KIND: Kind = Kind::Certificate;
    fn name(&self) -> &str {
        &self.name
    }
    fn list(config: &Config) -> &Vec<Self> {
        &config.certificates
    }
    fn list_mut(config: &mut Config) -> &mut Vec<Self> {
        &mut config.certificates
    }
}

impl Config {
    /// Sorts every list by name, so that equal configs encode (and hash) identically.
    pub fn canonicalize(&mut self) {
        self.upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        self.routes.sort_by(|a, b| a.name.cmp(&b.name));
        self.health_checks.sort_by(|a, b| a.name.cmp(&b.name));
        self.certificates.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn get<R: Resource>(&self, name: &str) -> Option<&R> {
        R::list(self).iter().find(|r| r.name() == name)
    }

    /// Inserts or replaces `resource`; returns the previous value.
    pub fn upsert<R: Resource>(&mut self, resource: R) -> Option<R> {
        let list = R::list_mut(self);
        match list.iter_mut().find(|r| r.name() == resource.name()) {
            Some(existing) => Some(std::mem::replace(existing, resource)),
            None => {
                list.push(resource);
                None
            }
        }
    }

    pub fn remove<R: Resource>(&mut self, name: &str) -> Option<R> {
        let list = R::list_mut(self);
        let index = list.iter().position(|r| r.name() == name)?;
        Some(list.remove(index))
    }

    /// Names of the routes that send traffic to `upstream`.
    pub fn routes_using_upstream(&self, upstream: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.upstream == upstream)
            .map(|r| r.name.clone())
            .collect()
    }

    /// Names of the upstreams checked by health-check policy `policy`.
    pub fn upstreams_using_health_check(&self, policy: &str) -> Vec<String> {
        self.upstreams
            .iter()
            .filter(|u| u.health_check == policy)
            .map(|u| u.name.clone())
            .collect()
    }

    /// Names of the upstreams that present certificate `name` to their targets.
    pub fn upstreams_using_certificate(&self, name: &str) -> Vec<String> {
        self.upstreams
            .iter()
            .filter(|u| u.tls.as_ref().is_some_and(|t| t.client_certificate == name))
            .map(|u| u.name.clone())
            .collect()
    }

    pub fn resource_count(&self) -> usize {
        self.upstreams.len()
            + self.routes.len()
            + self.health_checks.len()
            + self.certificates.len()
    }

    /// This config with every private key blanked: what the admin API and export show.
    pub fn redacted(mut self) -> Config {
        for certificate in &mut self.certificates {
            certificate.private_key_pem.clear();
        }
        self
    }
}
