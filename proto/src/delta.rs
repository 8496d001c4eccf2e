//! Deltas between two configs: what the control plane sends instead of a whole snapshot when the
//! data plane already holds a recent version, and how the data plane applies one.
//!
//! `apply(base, diff(base, target))` equals `target` after canonicalization; the snapshot's hash
//! lets the data plane prove it, so a delta can never produce a table a full snapshot would not.

use std::collections::BTreeMap;

use crate::kind::{Kind, Resource};
use crate::v1::{Certificate, Config, Delta, HealthCheckPolicy, ResourceRef, Route, Upstream};

/// The resources to upsert and remove to turn `base` into `target`.
pub fn diff(base: &Config, target: &Config) -> (Config, Vec<ResourceRef>) {
    let mut upserted = Config::default();
    let mut removed = Vec::new();
    diff_kind::<Certificate>(base, target, &mut upserted, &mut removed);
    diff_kind::<HealthCheckPolicy>(base, target, &mut upserted, &mut removed);
    diff_kind::<Upstream>(base, target, &mut upserted, &mut removed);
    diff_kind::<Route>(base, target, &mut upserted, &mut removed);
    (upserted, removed)
}

fn diff_kind<R: Resource>(
    base: &Config,
    target: &Config,
    upserted: &mut Config,
    removed: &mut Vec<ResourceRef>,
) {
    let before: BTreeMap<&str, &R> = R::list(base).iter().map(|r| (r.name(), r)).collect();
    let after: BTreeMap<&str, &R> = R::list(target).iter().map(|r| (r.name(), r)).collect();
    for (name, resource) in &after {
        if before.get(name) != Some(resource) {
            R::list_mut(upserted).push((*resource).clone());
        }
    }
    removed.extend(
        before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .map(|name| ResourceRef {
                kind: R::KIND.as_str().to_string(),
                name: (*name).to_string(),
            }),
    );
}

/// `base` with `delta` applied, canonicalized. An unknown kind in `removed` is an error.
pub fn apply(base: &Config, delta: &Delta) -> Result<Config, String> {
    let mut config = base.clone();
    for r in &delta.removed {
        match Kind::ALL.into_iter().find(|k| k.as_str() == r.kind) {
            Some(Kind::Certificate) => drop(config.remove::<Certificate>(&r.name)),
            Some(Kind::HealthCheck) => drop(config.remove::<HealthCheckPolicy>(&r.name)),
            Some(Kind::Upstream) => drop(config.remove::<Upstream>(&r.name)),
            Some(Kind::Route) => drop(config.remove::<Route>(&r.name)),
            None => {
                return Err(format!(
                    "removed resource {:?} has unknown kind {:?}",
                    r.name, r.kind
                ));
            }
        }
    }
    if let Some(upserted) = &delta.upserted {
        upserted
            .certificates
            .iter()
            .cloned()
            .for_each(|r| drop(config.upsert(r)));
        upserted
            .health_checks
            .iter()
            .cloned()
            .for_each(|r| drop(config.upsert(r)));
        upserted
            .upstreams
            .iter()
            .cloned()
            .for_each(|r| drop(config.upsert(r)));
        upserted
            .routes
            .iter()
            .cloned()
            .for_each(|r| drop(config.upsert(r)));
    }
    config.canonicalize();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::config_hash;
    use crate::v1::Target;

    fn upstream(name: &str, port: u16) -> Upstream {
        Upstream {
            name: name.into(),
            targets: vec![Target {
                address: format!("127.0.0.1:{port}"),
                weight: 1,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn applying_a_diff_reproduces_the_target() {
        let base = Config {
            upstreams: vec![upstream("a", 1), upstream("b", 2), upstream("c", 3)],
            ..Default::default()
        };
        let target = Config {
            upstreams: vec![upstream("a", 1), upstream("b", 20), upstream("d", 4)],
            ..Default::default()
        };
        let (upserted, removed) = diff(&base, &target);
        let names: Vec<&str> = upserted.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, vec!["b", "d"], "only what changed is sent");
        assert_eq!(
            removed,
            vec![ResourceRef {
                kind: "upstream".into(),
                name: "c".into()
            }]
        );
        let delta = Delta {
            upserted: Some(upserted),
            removed,
            ..Default::default()
        };
        let applied = apply(&base, &delta).unwrap();
        assert_eq!(config_hash(&applied), config_hash(&target));
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let delta = Delta {
            removed: vec![ResourceRef {
                kind: "listener".into(),
                name: "x".into(),
            }],
            ..Default::default()
        };
        assert!(apply(&Config::default(), &delta).is_err());
    }
}
