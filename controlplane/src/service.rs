//! The service layer: every admin operation, once, for both the REST and the gRPC adapters.

use std::collections::BTreeMap;
use std::time::SystemTime;

use gateway_proto::kind::{Kind, Resource, resource_ref};
use gateway_proto::v1::{
    ApplyResponse, AuditEntry, Certificate, Config, ConfigVersion, CreateTokenResponse, DataPlane,
    FieldViolation, HealthCheckPolicy, Route, ServerInfo, Status, Token, Traffic, Upstream,
    UpstreamHealth,
};

use crate::auth::{self, Principal, Role};
use crate::certificate;
use crate::error::ApiError;
use crate::page::{Page, PageRequest};
use crate::snapshot::Snapshots;
use crate::store::{Author, CREATE, Commit, DELETE, Store, StoredResource, has_labels};
use crate::traffic::{self, TRAFFIC_MAX_AGE_MS};
use crate::write::{WriteMode, WriteOptions, etag, merge_patch};

/// The outcome of a single-resource write.
#[derive(Debug)]
pub struct Written<R> {
    /// As stored, or as it would be stored by a dry run.
    pub resource: R,
    pub etag: String,
    /// The version the write produced (or would produce); the current one when nothing changed.
    pub version: u64,
    pub created: bool,
    pub changed: bool,
}

impl<R: Referenced> Written<R> {
    fn new(resource: R, created: bool, commit: &Commit) -> Self {
        Written {
            etag: etag(&resource),
            resource: resource.redacted(),
            version: commit.version,
            created,
            changed: !commit.changes.is_empty(),
        }
    }
}

/// How [`ConfigService::apply`] treats what the files do not name.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub validate_only: bool,
    pub prune: bool,
    /// Labels a resource must carry to be pruned; empty prunes everything not applied.
    pub selector: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct ConfigService {
    store: Store,
    snapshots: Snapshots,
}

/// What must be gone before a resource of this kind can be deleted, and what the API may show
/// of it.
pub trait Referenced: StoredResource {
    /// `<kind>/<name>` of the resources that refer to `name`.
    fn users(config: &Config, name: &str) -> Vec<String>;

    /// The resource as the API returns it: without secrets.
    fn redacted(self) -> Self {
        self
    }
}

impl Referenced for Certificate {
    fn users(config: &Config, name: &str) -> Vec<String> {
        config
            .upstreams_using_certificate(name)
            .into_iter()
            .map(|u| format!("upstream/{u}"))
            .collect()
    }

    /// Private keys are write-only; `not_after` is always shown, even on the echo of a write.
    fn redacted(mut self) -> Self {
        self.private_key_pem.clear();
        if self.not_after.is_empty() {
            self.not_after = certificate::not_after(&self.certificate_pem).unwrap_or_default();
        }
        self
    }
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

    /// A resource (without secrets) and its ETag.
    pub async fn get<R: Referenced>(&self, name: &str) -> Result<(R, String), ApiError> {
        let resource: R = self.store.get(name).await?;
        let tag = etag(&resource);
        Ok((resource.redacted(), tag))
    }

    pub async fn list<R: Referenced>(
        &self,
        page: &PageRequest,
        labels: &BTreeMap<String, String>,
    ) -> Result<Page<R>, ApiError> {
        let mut page: Page<R> = self.store.list(page, labels).await?;
        page.items = page.items.into_iter().map(Referenced::redacted).collect();
        Ok(page)
    }

    /// Creates, replaces or upserts one resource, if `options.precondition` holds in the
    /// transaction that writes it.
    pub async fn write<R: Referenced>(
        &self,
        resource: R,
        mode: WriteMode,
        options: &WriteOptions,
        by: &Principal,
    ) -> Result<Written<R>, ApiError> {
        let verb = match mode {
            WriteMode::Create => "Create",
            WriteMode::Replace => "Replace",
            WriteMode::Upsert => "Upsert",
        };
        let name = resource.name().to_string();
        let stored = resource.clone();
        let mut created = false;
        let commit = self
            .commit(
                &Author::new(by, operation(verb, R::KIND)),
                options.validate_only,
                |config| {
                    let current = config.get::<R>(&name);
                    options
                        .precondition
                        .check(R::KIND, &name, current.map(etag).as_deref())?;
                    match (mode, current) {
                        (WriteMode::Create, Some(_)) => {
                            return Err(ApiError::AlreadyExists {
                                kind: R::KIND,
                                name: name.clone(),
                            });
                        }
                        (WriteMode::Replace, None) => {
                            return Err(ApiError::not_found(R::KIND, &name));
                        }
                        _ => {}
                    }
                    created = current.is_none();
                    config.upsert(resource);
                    Ok(())
                },
            )
            .await?;
        Ok(Written::new(stored, created, &commit))
    }

    /// Applies an RFC 7396 merge patch to the stored resource, in the transaction that writes
    /// it: concurrent patches never undo each other.
    pub async fn patch<R: Referenced>(
        &self,
        name: &str,
        patch: &serde_json::Value,
        options: &WriteOptions,
        by: &Principal,
    ) -> Result<Written<R>, ApiError> {
        if !patch.is_object() {
            return Err(ApiError::BadRequest(
                "a merge patch must be a JSON object".into(),
            ));
        }
        let mut patched: Option<R> = None;
        let commit = self
            .commit(
                &Author::new(by, operation("Patch", R::KIND)),
                options.validate_only,
                |config| {
                    let current = config
                        .get::<R>(name)
                        .ok_or_else(|| ApiError::not_found(R::KIND, name))?;
                    options
                        .precondition
                        .check(R::KIND, name, Some(&etag(current)))?;
                    let mut value = serde_json::to_value(current)
                        .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", R::KIND)))?;
                    merge_patch(&mut value, patch);
                    if value.get("name").and_then(|n| n.as_str()) != Some(name) {
                        return Err(ApiError::BadRequest(format!(
                            "name: a patch cannot rename {}",
                            resource_ref(R::KIND, name)
                        )));
                    }
                    let resource: R = serde_json::from_value(value).map_err(|e| {
                        ApiError::BadRequest(format!("the patched resource is not valid: {e}"))
                    })?;
                    patched = Some(resource.clone());
                    config.upsert(resource);
                    Ok(())
                },
            )
            .await?;
        let resource = patched.ok_or_else(|| ApiError::Internal("patch not applied".into()))?;
        Ok(Written::new(resource, false, &commit))
    }

    pub async fn delete<R: Referenced>(
        &self,
        name: &str,
        options: &WriteOptions,
        by: &Principal,
    ) -> Result<u64, ApiError> {
        let commit = self
            .commit(
                &Author::new(by, operation("Delete", R::KIND)),
                options.validate_only,
                |config| {
                    let current = config.get::<R>(name);
                    options
                        .precondition
                        .check(R::KIND, name, current.map(etag).as_deref())?;
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
                },
            )
            .await?;
        Ok(commit.version)
    }

    /// Creates or replaces every resource in `desired`, in one transaction; with `prune`, also
    /// deletes every resource absent from `desired` that carries the selector's labels.
    pub async fn apply(
        &self,
        desired: Config,
        options: &ApplyOptions,
        by: &Principal,
    ) -> Result<ApplyResponse, ApiError> {
        let mut names = Vec::new();
        names.extend(
            desired
                .certificates
                .iter()
                .map(|r| format!("certificate/{}", r.name)),
        );
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
        let prune = options.prune.then_some(&options.selector);
        let commit = self
            .commit(
                &Author::new(by, "Apply"),
                options.validate_only,
                move |config| {
                    if let Some(selector) = prune {
                        prune_absent::<Route>(config, &desired, selector);
                        prune_absent::<Upstream>(config, &desired, selector);
                        prune_absent::<HealthCheckPolicy>(config, &desired, selector);
                        prune_absent::<Certificate>(config, &desired, selector);
                    }
                    upsert_all(config, desired.certificates);
                    upsert_all(config, desired.health_checks);
                    upsert_all(config, desired.upstreams);
                    upsert_all(config, desired.routes);
                    Ok(())
                },
            )
            .await?;
        Ok(apply_response(&commit, names))
    }

    pub async fn versions(&self, page: &PageRequest) -> Result<Page<ConfigVersion>, ApiError> {
        self.store.versions(page).await
    }

    /// One version, as the API shows it: private keys blanked.
    pub async fn version(&self, version: u64) -> Result<ConfigVersion, ApiError> {
        let mut found = self.stored_version(version).await?;
        found.config = found.config.map(Config::redacted);
        Ok(found)
    }

    async fn stored_version(&self, version: u64) -> Result<ConfigVersion, ApiError> {
        self.store
            .version(version)
            .await?
            .ok_or(ApiError::UnknownVersion(version))
    }

    /// Makes a new version whose content equals version `to`. The whole config is replaced and
    /// validated again, so a version that no longer passes today's validation is refused.
    pub async fn rollback(
        &self,
        to: u64,
        validate_only: bool,
        by: &Principal,
    ) -> Result<ApplyResponse, ApiError> {
        let target = self.stored_version(to).await?.config.unwrap_or_default();
        let commit = self
            .commit(&Author::new(by, "Rollback"), validate_only, move |config| {
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

    /// A page of data planes in node-id order, only those carrying every label in `labels`.
    pub async fn dataplanes_page(
        &self,
        page: &PageRequest,
        labels: &BTreeMap<String, String>,
    ) -> Result<Page<DataPlane>, ApiError> {
        let mut all = self.dataplanes().await?;
        all.retain(|d| has_labels(&d.labels, labels));
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(page_of(all, page, |d| d.node_id.clone()))
    }

    pub fn server_info(&self) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_version: self.snapshots.current().version,
            store: self.store.backend().kind().to_string(),
        }
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

    pub async fn tokens(&self, page: &PageRequest) -> Result<Page<Token>, ApiError> {
        let tokens = self.store.tokens().await?;
        Ok(page_of(tokens, page, |t| t.name.clone()))
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

    /// Commits `change`, or with `validate_only` checks it and reports what it would do.
    async fn commit(
        &self,
        author: &Author,
        validate_only: bool,
        change: impl FnOnce(&mut Config) -> Result<(), ApiError>,
    ) -> Result<Commit, ApiError> {
        // Certificates are checked (key, expiry) and completed (kept keys, not_after) here,
        // in the transaction, for every kind of write alike.
        let change = move |config: &mut Config| {
            let before = Config {
                certificates: config.certificates.clone(),
                ..Config::default()
            };
            change(config)?;
            certificate::prepare(&before, config, SystemTime::now())
        };
        if validate_only {
            return self.store.dry_run(author, change).await;
        }
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
        Kind::Certificate => "Certificate",
        Kind::HealthCheck => "HealthCheck",
        Kind::Upstream => "Upstream",
        Kind::Route => "Route",
    };
    format!("{verb}{noun}")
}

/// Removes every resource of kind `R` that `desired` does not name and that carries `selector`.
fn prune_absent<R: StoredResource>(
    config: &mut Config,
    desired: &Config,
    selector: &BTreeMap<String, String>,
) {
    R::list_mut(config)
        .retain(|r| desired.get::<R>(r.name()).is_some() || !has_labels(r.labels(), selector));
}

/// Pages through a list already sorted by `cursor`.
fn page_of<T>(items: Vec<T>, page: &PageRequest, cursor: impl Fn(&T) -> String) -> Page<T> {
    let fetch = usize::try_from(page.fetch()).unwrap_or(usize::MAX);
    let items: Vec<T> = items
        .into_iter()
        .filter(|item| {
            page.after
                .as_ref()
                .is_none_or(|after| cursor(item) > *after)
        })
        .take(fetch)
        .collect();
    page.finish(items, cursor)
}

fn upsert_all<R: Resource>(config: &mut Config, resources: Vec<R>) {
    for resource in resources {
        config.upsert(resource);
    }
}

/// Sorts a commit's changes into created, updated and deleted (by prune); every `requested`
/// resource that did not change is reported unchanged.
fn apply_response(commit: &Commit, requested: Vec<String>) -> ApplyResponse {
    let mut response = ApplyResponse {
        version: commit.version,
        ..Default::default()
    };
    for change in &commit.changes {
        let name = format!("{}/{}", change.kind, change.name);
        match change.op.as_str() {
            CREATE => response.created.push(name),
            DELETE => response.deleted.push(name),
            _ => response.updated.push(name),
        }
    }
    response.unchanged = requested
        .into_iter()
        .filter(|n| !response.created.contains(n) && !response.updated.contains(n))
        .collect();
    response
}
