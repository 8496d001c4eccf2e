//! gRPC `AdminService`: each method is one service-layer call. The per-kind methods share
//! generic helpers; `GetResource` and `WriteResource` carry ETags and dry runs for any kind.

use std::collections::BTreeMap;

use gateway_proto::kind::Kind;
use gateway_proto::v1::admin_service_server::AdminService;
use gateway_proto::v1::config_resource::Kind as OneOf;
use gateway_proto::v1::{
    ApplyRequest, ApplyResponse, Certificate, ConfigResource, ConfigVersion, CreateTokenRequest,
    CreateTokenResponse, DeleteRequest, DeleteResponse, GetRequest, GetResourceRequest,
    GetResourceResponse, GetServerInfoRequest, GetStatusRequest, GetTrafficRequest,
    GetVersionRequest, HealthCheckPolicy, ListAuditRequest, ListAuditResponse,
    ListCertificatesResponse, ListDataPlanesResponse, ListHealthChecksResponse, ListRequest,
    ListRoutesResponse, ListTokensResponse, ListUpstreamsResponse, ListVersionsRequest,
    ListVersionsResponse, RevokeTokenRequest, RevokeTokenResponse, RollbackRequest, Route,
    ServerInfo, Status as ConfigStatus, Traffic, Upstream, UpstreamHealth, WriteResourceRequest,
    WriteResourceResponse,
};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::api::auth::grpc_principal;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::page::{Page, PageRequest};
use crate::service::{ApplyOptions, ConfigService, Referenced};
use crate::write::{Precondition, WriteMode, WriteOptions};

pub struct AdminApi {
    service: ConfigService,
}

impl AdminApi {
    pub fn new(service: ConfigService) -> Self {
        AdminApi { service }
    }

    /// A per-kind Create*/Replace*: its request is the bare resource (changing that would break
    /// every client), so its precondition and dry run travel in request metadata, as `etag` and
    /// `validate-only` (the fields of `WriteResourceRequest`), and the answer carries the
    /// resource's `etag` and the `x-config-version` it produced in response metadata.
    async fn write<R: OneOfResource>(&self, request: Request<R>, mode: WriteMode) -> Reply<R> {
        let by = grpc_principal(&request)?;
        let options = metadata_write_options(request.metadata())?;
        let written = self
            .service
            .write(request.into_inner(), mode, &options, &by)
            .await?;
        let mut response = Response::new(written.resource);
        let metadata = response.metadata_mut();
        if let Ok(etag) = MetadataValue::try_from(written.etag.as_str()) {
            metadata.insert(ETAG, etag);
        }
        let (header, value) = if options.validate_only {
            (VALIDATE_ONLY, MetadataValue::from_static("true"))
        } else {
            (CONFIG_VERSION, MetadataValue::from(written.version))
        };
        metadata.insert(header, value);
        Ok(response)
    }

    async fn get<R: OneOfResource>(&self, request: Request<GetRequest>) -> Reply<R> {
        let (resource, _) = self.service.get::<R>(&request.into_inner().name).await?;
        Ok(Response::new(resource))
    }

    async fn list<R: OneOfResource>(
        &self,
        request: Request<ListRequest>,
    ) -> Result<Page<R>, Status> {
        let request = request.into_inner();
        let page = PageRequest::new(R::PLURAL, request.page_size, &request.page_token)?;
        Ok(self.service.list::<R>(&page, &request.labels).await?)
    }

    async fn delete<R: OneOfResource>(
        &self,
        request: Request<DeleteRequest>,
    ) -> Reply<DeleteResponse> {
        let by = grpc_principal(&request)?;
        let request = request.into_inner();
        let options = WriteOptions {
            precondition: Precondition::from_etag(&request.etag),
            validate_only: request.validate_only,
        };
        let version = self
            .service
            .delete::<R>(&request.name, &options, &by)
            .await?;
        Ok(Response::new(DeleteResponse { version }))
    }

    async fn write_any<R: OneOfResource>(
        &self,
        resource: R,
        mode: WriteMode,
        options: &WriteOptions,
        by: &Principal,
    ) -> Reply<WriteResourceResponse> {
        let written = self.service.write(resource, mode, options, by).await?;
        Ok(Response::new(WriteResourceResponse {
            etag: written.etag,
            version: written.version,
            created: written.created,
            changed: written.changed,
            resource: Some(ConfigResource {
                kind: Some(written.resource.wrap()),
            }),
        }))
    }

    async fn get_any<R: OneOfResource>(&self, name: &str) -> Reply<GetResourceResponse> {
        let (resource, etag) = self.service.get::<R>(name).await?;
        Ok(Response::new(GetResourceResponse {
            resource: Some(ConfigResource {
                kind: Some(resource.wrap()),
            }),
            etag,
        }))
    }
}

/// A resource kind that `ConfigResource` can carry.
trait OneOfResource: Referenced {
    fn wrap(self) -> OneOf;
}

impl OneOfResource for Upstream {
    fn wrap(self) -> OneOf {
        OneOf::Upstream(self)
    }
}

impl OneOfResource for Route {
    fn wrap(self) -> OneOf {
        OneOf::Route(self)
    }
}

impl OneOfResource for HealthCheckPolicy {
    fn wrap(self) -> OneOf {
        OneOf::HealthCheck(self)
    }
}

impl OneOfResource for Certificate {
    fn wrap(self) -> OneOf {
        OneOf::Certificate(self)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Request metadata of a per-kind write: the precondition (as `WriteResourceRequest.etag`).
pub const ETAG: &str = "etag";
/// Request metadata of a per-kind write: `true` makes it a dry run; echoed in the answer.
pub const VALIDATE_ONLY: &str = "validate-only";
/// Response metadata of a per-kind write: the config version it produced.
pub const CONFIG_VERSION: &str = "x-config-version";

fn metadata_write_options(metadata: &MetadataMap) -> Result<WriteOptions, ApiError> {
    let text = |name: &str| -> Result<&str, ApiError> {
        metadata.get(name).map_or(Ok(""), |value| {
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("{name} metadata: not ASCII")))
        })
    };
    let validate_only = match text(VALIDATE_ONLY)?.trim() {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "{VALIDATE_ONLY} metadata: {other:?} is not true or false"
            )));
        }
    };
    Ok(WriteOptions {
        precondition: Precondition::from_etag(text(ETAG)?),
        validate_only,
    })
}

fn write_mode(mode: i32) -> Result<WriteMode, ApiError> {
    use gateway_proto::v1::WriteMode as Wire;
    match Wire::try_from(mode) {
        Ok(Wire::Unspecified | Wire::Upsert) => Ok(WriteMode::Upsert),
        Ok(Wire::Create) => Ok(WriteMode::Create),
        Ok(Wire::Replace) => Ok(WriteMode::Replace),
        Err(_) => Err(ApiError::BadRequest(format!(
            "mode: unknown write mode {mode}"
        ))),
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_upstream(&self, request: Request<Upstream>) -> Reply<Upstream> {
        self.write(request, WriteMode::Create).await
    }
    async fn get_upstream(&self, request: Request<GetRequest>) -> Reply<Upstream> {
        self.get(request).await
    }
    async fn list_upstreams(&self, request: Request<ListRequest>) -> Reply<ListUpstreamsResponse> {
        let page = self.list(request).await?;
        Ok(Response::new(ListUpstreamsResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }
    async fn replace_upstream(&self, request: Request<Upstream>) -> Reply<Upstream> {
        self.write(request, WriteMode::Replace).await
    }
    async fn delete_upstream(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        self.delete::<Upstream>(request).await
    }

    async fn create_route(&self, request: Request<Route>) -> Reply<Route> {
        self.write(request, WriteMode::Create).await
    }
    async fn get_route(&self, request: Request<GetRequest>) -> Reply<Route> {
        self.get(request).await
    }
    async fn list_routes(&self, request: Request<ListRequest>) -> Reply<ListRoutesResponse> {
        let page = self.list(request).await?;
        Ok(Response::new(ListRoutesResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }
    async fn replace_route(&self, request: Request<Route>) -> Reply<Route> {
        self.write(request, WriteMode::Replace).await
    }
    async fn delete_route(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        self.delete::<Route>(request).await
    }

    async fn create_health_check(
        &self,
        request: Request<HealthCheckPolicy>,
    ) -> Reply<HealthCheckPolicy> {
        self.write(request, WriteMode::Create).await
    }
    async fn get_health_check(&self, request: Request<GetRequest>) -> Reply<HealthCheckPolicy> {
        self.get(request).await
    }
    async fn list_health_checks(
        &self,
        request: Request<ListRequest>,
    ) -> Reply<ListHealthChecksResponse> {
        let page = self.list(request).await?;
        Ok(Response::new(ListHealthChecksResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }
    async fn replace_health_check(
        &self,
        request: Request<HealthCheckPolicy>,
    ) -> Reply<HealthCheckPolicy> {
        self.write(request, WriteMode::Replace).await
    }
    async fn delete_health_check(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        self.delete::<HealthCheckPolicy>(request).await
    }

    async fn create_certificate(&self, request: Request<Certificate>) -> Reply<Certificate> {
        self.write(request, WriteMode::Create).await
    }
    async fn get_certificate(&self, request: Request<GetRequest>) -> Reply<Certificate> {
        self.get(request).await
    }
    async fn list_certificates(
        &self,
        request: Request<ListRequest>,
    ) -> Reply<ListCertificatesResponse> {
        let page = self.list(request).await?;
        Ok(Response::new(ListCertificatesResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }
    async fn replace_certificate(&self, request: Request<Certificate>) -> Reply<Certificate> {
        self.write(request, WriteMode::Replace).await
    }
    async fn delete_certificate(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        self.delete::<Certificate>(request).await
    }

    async fn get_resource(
        &self,
        request: Request<GetResourceRequest>,
    ) -> Reply<GetResourceResponse> {
        let request = request.into_inner();
        match Kind::ALL.into_iter().find(|k| k.as_str() == request.kind) {
            Some(Kind::Upstream) => self.get_any::<Upstream>(&request.name).await,
            Some(Kind::Route) => self.get_any::<Route>(&request.name).await,
            Some(Kind::HealthCheck) => self.get_any::<HealthCheckPolicy>(&request.name).await,
            Some(Kind::Certificate) => self.get_any::<Certificate>(&request.name).await,
            None => Err(ApiError::BadRequest(format!(
                "kind: {:?} is not a kind (expected upstream, route, health-check or certificate)",
                request.kind
            ))
            .into()),
        }
    }

    async fn write_resource(
        &self,
        request: Request<WriteResourceRequest>,
    ) -> Reply<WriteResourceResponse> {
        let by = grpc_principal(&request)?;
        let request = request.into_inner();
        let mode = write_mode(request.mode)?;
        let options = WriteOptions {
            precondition: Precondition::from_etag(&request.etag),
            validate_only: request.validate_only,
        };
        match request.resource.and_then(|r| r.kind) {
            Some(OneOf::Upstream(r)) => self.write_any(r, mode, &options, &by).await,
            Some(OneOf::Route(r)) => self.write_any(r, mode, &options, &by).await,
            Some(OneOf::HealthCheck(r)) => self.write_any(r, mode, &options, &by).await,
            Some(OneOf::Certificate(r)) => self.write_any(r, mode, &options, &by).await,
            None => Err(ApiError::BadRequest(
                "resource: set one of upstream, route, health_check or certificate".into(),
            )
            .into()),
        }
    }

    async fn apply(&self, request: Request<ApplyRequest>) -> Reply<ApplyResponse> {
        let by = grpc_principal(&request)?;
        let request = request.into_inner();
        let options = ApplyOptions {
            validate_only: request.validate_only,
            prune: request.prune,
            selector: request.prune_selector,
        };
        let config = request.config.unwrap_or_default();
        Ok(Response::new(
            self.service.apply(config, &options, &by).await?,
        ))
    }

    async fn list_data_planes(
        &self,
        request: Request<ListRequest>,
    ) -> Reply<ListDataPlanesResponse> {
        let request = request.into_inner();
        let page = PageRequest::new("dataplanes", request.page_size, &request.page_token)?;
        let page = self.service.dataplanes_page(&page, &request.labels).await?;
        Ok(Response::new(ListDataPlanesResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_status(&self, _: Request<GetStatusRequest>) -> Reply<ConfigStatus> {
        Ok(Response::new(self.service.status().await?))
    }

    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Reply<ListVersionsResponse> {
        let request = request.into_inner();
        let size = if request.page_size > 0 {
            request.page_size
        } else {
            request.limit
        };
        let page = PageRequest::new("versions", size, &request.page_token)?;
        let page = self.service.versions(&page).await?;
        Ok(Response::new(ListVersionsResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_version(&self, request: Request<GetVersionRequest>) -> Reply<ConfigVersion> {
        Ok(Response::new(
            self.service.version(request.into_inner().version).await?,
        ))
    }

    async fn rollback(&self, request: Request<RollbackRequest>) -> Reply<ApplyResponse> {
        let by = grpc_principal(&request)?;
        let request = request.into_inner();
        Ok(Response::new(
            self.service
                .rollback(request.to, request.validate_only, &by)
                .await?,
        ))
    }

    async fn get_upstream_health(&self, request: Request<GetRequest>) -> Reply<UpstreamHealth> {
        Ok(Response::new(
            self.service
                .upstream_health(&request.into_inner().name)
                .await?,
        ))
    }

    async fn get_traffic(&self, _: Request<GetTrafficRequest>) -> Reply<Traffic> {
        Ok(Response::new(self.service.traffic().await?))
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Reply<CreateTokenResponse> {
        let principal = grpc_principal(&request)?;
        let request = request.into_inner();
        Ok(Response::new(
            self.service
                .create_token(&request.name, &request.role, &principal)
                .await?,
        ))
    }

    async fn list_tokens(&self, request: Request<ListRequest>) -> Reply<ListTokensResponse> {
        let request = request.into_inner();
        no_labels(&request.labels)?;
        let page = PageRequest::new("tokens", request.page_size, &request.page_token)?;
        let page = self.service.tokens(&page).await?;
        Ok(Response::new(ListTokensResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Reply<RevokeTokenResponse> {
        let principal = grpc_principal(&request)?;
        self.service
            .revoke_token(&request.into_inner().name, &principal)
            .await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn get_server_info(&self, _: Request<GetServerInfoRequest>) -> Reply<ServerInfo> {
        Ok(Response::new(self.service.server_info()))
    }

    async fn list_audit(&self, request: Request<ListAuditRequest>) -> Reply<ListAuditResponse> {
        let request = request.into_inner();
        let page = PageRequest::new("audit", request.page_size, &request.page_token)?;
        let page = self.service.audit(&page, Some(&request.actor)).await?;
        Ok(Response::new(ListAuditResponse {
            items: page.items,
            next_page_token: page.next_page_token,
        }))
    }
}

/// Tokens carry no labels: a label filter on them is a mistake worth reporting.
fn no_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest("labels: tokens have no labels".into()))
    }
}
