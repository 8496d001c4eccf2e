//! The service layer: every admin operation, once, for both the REST and the gRPC adapters.

use gateway_proto::kind::{Kind, Resource};
use gateway_proto::v1::{
    ApplyResponse, AuditEntry, Config, ConfigVersion, CreateTokenResponse, DataPlane,
    FieldViolation, HealthCheckPolicy, Route, Status, Token, Traffic, Upstream, UpstreamHealth,
};

use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::page::{Page, PageRequest};
use crate::snapshot::Snapshots;
use crate::store::{Author, CREATE, Commit, Store, StoredResource};
use crate::traffic::{self, TRAFFIC_MAX_AGE_MS};

#[derive(Clone)]
pub struct ConfigService {
    store: Store,
    snapshots: Snapshots,
}

/// What must be gone before a resource of this kind can be deleted.
pub trait Referenced: StoredResource {
    /// `<kind>/<name>` of the resources that refer to `name`.
    fn users(config: &Config, name: &str) -> Vec<String>;
}

impl Referenced for Upstream {
    fn users(config: &Config, name: &str) -> Vec<String> {
        config
            .routes_using_upstream(name)
            .into_iter()
            .map(|r| format!("route/{r}"))
            .collect()
    }
}

impl Referenced for HealthCheckPolicy {
    fn users(config: &Config, name: &str) -> Vec<String> {
        config
            .upstreams_using_health_check(name)
            .into_iter()
            .map(|u| format!("upstream/{u}"))
            .collect()
    }
}

impl Referenced for Route {
    fn users(_: &Config, _: &str) -> Vec<String> {
        Vec::new()
    }
}

impl ConfigService {
    pub fn new(store: Store, snapshots: Snapshots) -> Self {
        ConfigService { store, snapshots }
    }

    pub async fn get<R: StoredResource>(&self, name: &str) -> Result<R, ApiError> {
        self.store.get(name).await
    }

    pub async fn list<R: StoredResource>(&self) -> Result<Vec<R>, ApiError> {
        self.store.list().await
    }

    pub async fn create<R: StoredResource>(
        &self,
        resource: R,
        by: &Principal,
    ) -> Result<(R, u64), ApiError> {
        let stored = resource.clone();
        let commit = self
            .commit(
                &Author::new(by, operation("Create", R::KIND)),
                move |config| {
                    if config.get::<R>(resource.name()).is_some() {
                        return Err(ApiError::AlreadyExists {
                            kind: R::KIND,
                            name: resource.name().to_string(),
                        });
                    }
                    config.upsert(resource);
                    Ok(())
                },
            )
            .await?;
        Ok((stored, commit.version))
    }

    pub async fn replace<R: StoredResource>(
        &self,
        resource: R,
        by: &Principal,
    ) -> Result<(R, u64), ApiError> {
        let stored = resource.clone();
        let author = Author::new(by, operation("Replace", R::KIND));
        let commit = self
            .commit(&author, move |config| {
                match config.upsert(resource.clone()) {
                    Some(_) => Ok(()),
                    None => Err(ApiError::not_found(R::KIND, resource.name())),
                }
            })
            .await?;
        Ok((stored, commit.version))
    }

    pub async fn delete<R: Referenced>(&self, name: &str, by: &Principal) -> Result<u64, ApiError> {
        let commit = self
            .commit(&Author::new(by, operation("Delete", R::KIND)), |config| {
                let used_by = R::users(config, name);
                if !used_by.is_empty() {
                    return Err(ApiError::InUse {
                        kind: R::KIND,
                        name: name.to_string(),
                        used_by,
                    });
                }
                config
                    .remove::<R>(name)
                    .map(|_| ())
                    .ok_or_else(|| ApiError::not_found(R::KIND, name))
            })
            .await?;
        Ok(commit.version)
    }

    /// Creates or replaces every resource in `desired`, in one transaction.
    pub async fn apply(&self, desired: Config, by: &Principal) -> Result<ApplyResponse, ApiError> {
        let mut names = Vec::new();
        names.extend(
            desired
                .health_checks
                .iter()
                .map(|r| format!("health-check/{}", r.name)),
        );
        names.extend(
            desired
                .upstreams
                .iter()
                .map(|r| format!("upstream/{}", r.name)),
        );
        names.extend(desired.routes.iter().map(|r| format!("route/{}", r.name)));
        let commit = self
            .commit(&Author::new(by, "Apply"), move |config| {
                upsert_all(config, desired.health_checks);
                upsert_all(config, desired.upstreams);
                upsert_all(config, desired.routes);
                Ok(())
            })
            .await?;
        Ok(apply_response(&commit, names))
    }

    pub async fn versions(&self, limit: u32) -> Result<Vec<ConfigVersion>, ApiError> {
        let limit = if limit == 0 { 50 } else { limit.min(1000) };
        self.store.versions(limit).await
    }

    pub async fn version(&self, version: u64) -> Result<ConfigVersion, ApiError> {
        self.store
            .version(version)
            .await?
            .ok_or(ApiError::UnknownVersion(version))
    }

    /// Makes a new version whose content equals version `to`. The whole config is replaced and
    /// validated again, so a version that no longer passes today's validation is refused.
    pub async fn rollback(&self, to: u64, by: &Principal) -> Result<ApplyResponse, ApiError> {
        let target = self.version(to).await?.config.unwrap_or_default();
        let commit = self
            .commit(&Author::new(by, "Rollback"), move |config| {
                *config = target;
                Ok(())
            })
            .await?;
        let mut response = ApplyResponse {
            version: commit.version,
            ..Default::default()
        };
        for change in commit.changes {
            let name = format!("{}/{}", change.kind, change.name);
            if change.op == CREATE {
                response.created.push(name)
            } else {
                response.updated.push(name)
            }
        }
        Ok(response)
    }

    /// Each target of `upstream` as seen by each connected data plane.
    pub async fn upstream_health(&self, upstream: &str) -> Result<UpstreamHealth, ApiError> {
        self.store.get::<Upstream>(upstream).await?;
        let connected: Vec<String> = self
            .dataplanes()
            .await?
            .into_iter()
            .filter(|d| d.connected)
            .map(|d| d.node_id)
            .collect();
        let targets = self
            .store
            .upstream_health(upstream)
            .await?
            .into_iter()
            .filter(|t| connected.contains(&t.node_id))
            .collect();
        Ok(UpstreamHealth {
            upstream: upstream.to_string(),
            targets,
        })
    }

    /// Request rates per route and upstream over the data planes' latest reports.
    pub async fn traffic(&self) -> Result<Traffic, ApiError> {
        let reports = self.store.recent_traffic(TRAFFIC_MAX_AGE_MS).await?;
        Ok(traffic::aggregate(&reports))
    }

    pub async fn dataplanes(&self) -> Result<Vec<DataPlane>, ApiError> {
        self.store.dataplanes().await
    }

    pub async fn status(&self) -> Result<Status, ApiError> {
        let current = self.snapshots.current();
        Ok(Status {
            version: current.version,
            hash: current.hash.clone(),
            data_planes: self.dataplanes().await?,
        })
    }

    /// Creates a token; the response holds its secret, which is never available again.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        by: &Principal,
    ) -> Result<CreateTokenResponse, ApiError> {
        let violation = |field: &str, reason: String| FieldViolation {
            resource: format!("token/{name}"),
            field: field.into(),
            reason,
        };
        let mut violations = Vec::new();
        if let Err(error) = auth::check_token_name(name) {
            violations.push(violation("name", error));
        }
        let parsed = Role::parse(role);
        if parsed.is_none() {
            violations.push(violation(
                "role",
                format!("{role:?} is not a role (expected {})", Role::NAMES),
            ));
        }
        let (Some(role), true) = (parsed, violations.is_empty()) else {
            return Err(ApiError::Invalid(violations));
        };
        let secret = auth::generate_token();
        let token = self
            .store
            .create_token(
                name,
                role,
                &auth::token_sha256(&secret),
                &Author::new(by, "CreateToken"),
            )
            .await?;
        tracing::info!(token = %name, %role, by = %by.name, "token created");
        Ok(CreateTokenResponse {
            token: Some(token),
            secret,
        })
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, ApiError> {
        self.store.tokens().await
    }

    pub async fn revoke_token(&self, name: &str, by: &Principal) -> Result<(), ApiError> {
        self.store
            .revoke_token(name, &Author::new(by, "RevokeToken"))
            .await?;
        tracing::info!(token = %name, by = %by.name, "token revoked");
        Ok(())
    }

    /// Audit entries, newest first.
    pub async fn audit(
        &self,
        page: &PageRequest,
        actor: Option<&str>,
    ) -> Result<Page<AuditEntry>, ApiError> {
        self.store
            .audit(page, actor.filter(|a| !a.is_empty()))
            .await
    }

    async fn commit(
        &self,
        author: &Author,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Commit, ApiError> {
        let commit = self.store.mutate(author, change).await?;
        if !commit.changes.is_empty() {
            tracing::info!(version = commit.version, hash = %commit.hash, actor = %author.actor, operation = %author.operation, changes = ?commit.changes, "config committed");
            // The commit is durable; a failed refresh is retried by the poller.
            if let Err(error) = self.snapshots.refresh().await {
                tracing::warn!(%error, "publishing the new version failed; the poller will retry");
            }
        }
        Ok(commit)
    }
}

/// The API operation's name, the same on REST and gRPC: `CreateRoute`, `DeleteHealthCheck`.
fn operation(verb: &str, kind: Kind) -> String {
    let noun = match kind {
        Kind::HealthCheck => "HealthCheck",
        Kind::Upstream => "Upstream",
        Kind::Route => "Route",
    };
    format!("{verb}{noun}")
}

fn upsert_all<R: Resource>(config: &mut Config, resources: Vec<R>) {
    for resource in resources {
        config.upsert(resource);
    }
}

/// Sorts a commit's changes into created and updated (deletes count as updates of the config);
/// every `requested` resource that did not change is reported unchanged.
fn apply_response(commit: &Commit, requested: Vec<String>) -> ApplyResponse {
    let mut response = ApplyResponse {
        version: commit.version,
        ..Default::default()
    };
    for change in &commit.changes {
        let name = format!("{}/{}", change.kind, change.name);
        if change.op == CREATE {
            response.created.push(name);
        } else {
            response.updated.push(name);
        }
    }
    response.unchanged = requested
        .into_iter()
        .filter(|n| !response.created.contains(n) && !response.updated.contains(n))
        .collect();
    response
}
