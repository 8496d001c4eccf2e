//! One suite, both backends: every test runs against a fresh Postgres database and a fresh
//! SQLite file, so the embedded store cannot drift from the production one.

use gateway_proto::v1::{
    Config, HealthCheckPolicy, HttpHealthCheck, Route, RouteMatch, Target, Upstream, route_match,
};

use super::*;
use crate::page::PageRequest;

/// A store on a throwaway database, dropped with the guard.
pub(crate) struct Scratch {
    pub store: Store,
    /// Where the store is, to open it again.
    pub url: String,
    _guard: Guard,
}

/// The key-encryption key of every scratch store.
pub(crate) const TEST_SECRETS_KEY: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub(crate) fn test_sealer() -> Sealer {
    Sealer::new(Some(
        crate::secrets::KeyEncryptionKey::from_hex(TEST_SECRETS_KEY, "test").unwrap(),
    ))
}

enum Guard {
    Postgres { admin_url: String, name: String },
    Sqlite(#[allow(dead_code)] std::path::PathBuf),
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Runtime::new() else {
                        return;
                    };
                    runtime.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
            Guard::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

impl Scratch {
    /// Closes the store and opens it again with `sealer`, as a restarted control plane would.
    pub(crate) async fn reopen(self, sealer: Sealer) -> Result<Scratch, OpenError> {
        let Scratch { store, url, _guard } = self;
        store.pool.close().await;
        drop(store);
        let store = Store::open(&url, sealer).await?;
        Ok(Scratch { store, url, _guard })
    }
}

pub(crate) async fn postgres() -> Scratch {
    use sqlx::Connection;
    let admin_url = std::env::var("GATEWAY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("gw_store_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("Postgres for the store tests");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    let store = Store::open(&url, test_sealer())
        .await
        .expect("open Postgres store");
    Scratch {
        store,
        url,
        _guard: Guard::Postgres { admin_url, name },
    }
}

pub(crate) async fn sqlite() -> Scratch {
    let dir = std::env::temp_dir().join(format!("gw-store-{:016x}", rand::random::<u64>()));
    let path = dir.join("gateway.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url, test_sealer())
        .await
        .expect("open SQLite store");
    Scratch {
        store,
        url,
        _guard: Guard::Sqlite(path),
    }
}

/// Runs each listed test body once per backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::postgres().await.store).await; })*
        }
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await.store).await; })*
        }
    };
}

both_backends!(
    versions_are_monotonic_and_start_at_zero,
    a_change_is_all_or_nothing,
    an_identical_change_creates_no_version,
    references_are_enforced_by_keys,
    deletes_are_stored,
    history_keeps_every_version,
    dataplanes_are_recorded,
    reports_replace_what_a_data_plane_said_before,
    every_commit_has_its_audit_row_and_author,
);

fn author() -> Author {
    Author {
        actor: "tester".into(),
        operation: "Test".into(),
    }
}

/// A change that upserts one resource.
fn add<R: Resource>(resource: R) -> impl FnOnce(&mut Config) -> Result<(), ApiError> {
    move |config| {
        config.upsert(resource);
        Ok(())
    }
}

fn upstream(name: &str) -> Upstream {
    Upstream {
        name: name.into(),
        targets: vec![Target {
            address: "127.0.0.1:9001".into(),
            weight: 1,
        }],
        ..Default::default()
    }
}

fn route(name: &str, upstream: &str) -> Route {
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path: Some(route_match::Path::Prefix(format!("/{name}"))),
            ..Default::default()
        }),
        upstream: upstream.into(),
        ..Default::default()
    }
}

async fn versions_are_monotonic_and_start_at_zero(store: Store) {
    assert_eq!(store.head_version().await.unwrap(), 0);
    assert_eq!(store.latest().await.unwrap().version, 0);
    let first = store.mutate(&author(), add(upstream("a"))).await.unwrap();
    let second = store.mutate(&author(), add(upstream("b"))).await.unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    let latest = store.latest().await.unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(
        latest.hash,
        gateway_proto::hash::config_hash(&latest.config)
    );
}

async fn a_change_is_all_or_nothing(store: Store) {
    let error = store
        .mutate(&author(), |c| {
            c.upstreams.push(upstream("ok"));
            c.routes.push(route("broken", "missing"));
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Invalid(ref v) if v[0].field == "upstream"),
        "{error:?}"
    );
    assert!(
        store
            .list::<Upstream>(&PageRequest::first("upstreams", 100), &BTreeMap::new())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing of a refused change is written"
    );
    assert_eq!(
        store.head_version().await.unwrap(),
        0,
        "a refused change takes no version"
    );

    let refused = store
        .mutate(&author(), |_| Err(ApiError::BadRequest("no".into())))
        .await;
    assert!(refused.is_err());
    assert_eq!(store.head_version().await.unwrap(), 0);
}

async fn an_identical_change_creates_no_version(store: Store) {
    store.mutate(&author(), add(upstream("a"))).await.unwrap();
    let again = store
        .mutate(&author(), |c| {
            c.upsert(upstream("a"));
            Ok(())
        })
        .await
        .unwrap();
    assert!(again.changes.is_empty());
    assert_eq!(again.version, 1);
    assert_eq!(store.head_version().await.unwrap(), 1);
}

async fn references_are_enforced_by_keys(store: Store) {
    store
        .mutate(&author(), |c| {
            c.health_checks.push(HealthCheckPolicy {
                name: "hc".into(),
                check: Some(gateway_proto::v1::health_check_policy::Check::Http(
                    HttpHealthCheck {
                        path: "/".into(),
                        ..Default::default()
                    },
                )),
                interval_ms: 1000,
                timeout_ms: 500,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                ..Default::default()
            });
            c.upstreams.push(Upstream {
                health_check: "hc".into(),
                ..upstream("a")
            });
            c.routes.push(route("r", "a"));
            Ok(())
        })
        .await
        .unwrap();
    // Bypass validation: the foreign keys alone must refuse a dangling reference.
    let mut tx = store.pool.begin().await.unwrap();
    sqlx::query("DELETE FROM upstreams WHERE name = 'a'")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(
        tx.commit().await.is_err(),
        "deleting a referenced upstream violates the key"
    );
    assert_eq!(store.get::<Upstream>("a").await.unwrap().name, "a");
}

async fn deletes_are_stored(store: Store) {
    store.mutate(&author(), add(upstream("a"))).await.unwrap();
    let commit = store
        .mutate(&author(), |c| {
            c.upstreams.clear();
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(commit.changes, vec![change(DELETE, Kind::Upstream, "a")]);
    assert!(matches!(
        store.get::<Upstream>("a").await,
        Err(ApiError::NotFound { .. })
    ));
    assert_eq!(store.latest().await.unwrap().config, Config::default());
}

async fn history_keeps_every_version(store: Store) {
    store.mutate(&author(), add(upstream("a"))).await.unwrap();
    store.mutate(&author(), add(upstream("b"))).await.unwrap();
    let history = store
        .versions(&PageRequest::first("versions", 10))
        .await
        .unwrap()
        .items;
    let versions: Vec<u64> = history.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![2, 1], "newest first");
    assert_eq!(
        history[0].changes,
        vec![change(CREATE, Kind::Upstream, "b")]
    );
    let first = store.version(1).await.unwrap().unwrap();
    let names: Vec<&str> = first
        .config
        .as_ref()
        .unwrap()
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(names, vec!["a"]);
    assert!(store.version(3).await.unwrap().is_none());
}

async fn dataplanes_are_recorded(store: Store) {
    let hello = gateway_proto::v1::Hello {
        node_id: "dp-1".into(),
        build_version: "1".into(),
        ..Default::default()
    };
    store
        .dataplane_connected(&hello, "127.0.0.1:5000")
        .await
        .unwrap();
    store.dataplane_applied("dp-1", 3, "abc").await.unwrap();
    let violation = gateway_proto::v1::FieldViolation {
        resource: "route/r".into(),
        field: "match".into(),
        reason: "bad".into(),
    };
    store
        .dataplane_rejected("dp-1", 4, std::slice::from_ref(&violation))
        .await
        .unwrap();
    let listed = store.dataplanes().await.unwrap();
    assert_eq!(listed.len(), 1);
    let dp = &listed[0];
    assert!(dp.connected);
    assert_eq!(
        (
            dp.applied_version,
            dp.applied_hash.as_str(),
            dp.rejected_version
        ),
        (3, "abc", 4)
    );
    assert_eq!(dp.rejection_errors, vec![violation]);
    store.dataplane_disconnected("dp-1").await.unwrap();
    assert!(!store.dataplanes().await.unwrap()[0].connected);
}

#[tokio::test]
async fn a_second_process_on_the_embedded_store_is_refused() {
    let scratch = sqlite().await;
    let Backend::Sqlite { path, .. } = scratch.store.backend() else {
        unreachable!()
    };
    let second = Store::open(&format!("sqlite://{}", path.display()), test_sealer()).await;
    let Err(error) = second else {
        panic!("a second store on the same file opened")
    };
    assert!(error.to_string().contains("Postgres"), "{error}");
}

async fn reports_replace_what_a_data_plane_said_before(store: Store) {
    use gateway_proto::v1::{HealthReport, TargetHealth, TrafficReport};
    let target = |address: &str, healthy: bool| TargetHealth {
        upstream: "web".into(),
        address: address.into(),
        healthy,
        reason: if healthy {
            String::new()
        } else {
            "status 500".into()
        },
        since: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    let first = HealthReport {
        targets: vec![target("a:1", true), target("b:1", true)],
    };
    store.record_health("dp-1", &first).await.unwrap();
    store
        .record_health(
            "dp-2",
            &HealthReport {
                targets: vec![target("a:1", false)],
            },
        )
        .await
        .unwrap();
    store
        .record_health(
            "dp-1",
            &HealthReport {
                targets: vec![target("a:1", true)],
            },
        )
        .await
        .unwrap();
    let seen: Vec<(String, String, bool)> = store
        .upstream_health("web")
        .await
        .unwrap()
        .into_iter()
        .map(|o| {
            let h = o.health.unwrap();
            (o.node_id, h.address, h.healthy)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("dp-1".into(), "a:1".into(), true),
            ("dp-2".into(), "a:1".into(), false)
        ]
    );

    let report = TrafficReport {
        interval_ms: 5000,
        ..Default::default()
    };
    store.record_traffic("dp-1", &report).await.unwrap();
    store.record_traffic("dp-1", &report).await.unwrap();
    assert_eq!(store.recent_traffic(60_000).await.unwrap().len(), 1);
}

async fn every_commit_has_its_audit_row_and_author(store: Store) {
    let alice = Author {
        actor: "alice".into(),
        operation: "CreateUpstream".into(),
    };
    let first = store.mutate(&alice, add(upstream("a"))).await.unwrap();
    // Refused and identical changes leave no row.
    store
        .mutate(&author(), |_| Err(ApiError::BadRequest("no".into())))
        .await
        .unwrap_err();
    store.mutate(&author(), add(upstream("a"))).await.unwrap();
    let second = store.mutate(&author(), add(upstream("b"))).await.unwrap();

    let audit = store
        .audit(&PageRequest::first("audit", 10), None)
        .await
        .unwrap();
    let rows: Vec<(&str, &str, u64)> = audit
        .items
        .iter()
        .map(|e| (e.actor.as_str(), e.operation.as_str(), e.version))
        .collect();
    assert_eq!(
        rows,
        [
            ("tester", "Test", second.version),
            ("alice", "CreateUpstream", first.version)
        ]
    );
    assert_eq!(audit.items[1].changes, first.changes);
    let only_alice = store
        .audit(&PageRequest::first("audit", 10), Some("alice"))
        .await
        .unwrap();
    assert_eq!(only_alice.items.len(), 1);

    let versions = store
        .versions(&PageRequest::first("versions", 10))
        .await
        .unwrap()
        .items;
    assert_eq!(versions[0].author, "tester");
    assert_eq!(versions[1].author, "alice");
    let version = store.version(first.version).await.unwrap().unwrap();
    assert_eq!(version.author, "alice");
}
