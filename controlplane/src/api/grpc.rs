//! gRPC `AdminService`: each method is one service-layer call.

use gateway_proto::v1::admin_service_server::AdminService;
use gateway_proto::v1::{
    ApplyRequest, ApplyResponse, ConfigVersion, CreateTokenRequest, CreateTokenResponse,
    DeleteRequest, DeleteResponse, GetRequest, GetStatusRequest, GetTrafficRequest,
    GetVersionRequest, HealthCheckPolicy, ListAuditRequest, ListAuditResponse,
    ListDataPlanesResponse, ListHealthChecksResponse, ListRequest, ListRoutesResponse,
    ListTokensResponse, ListUpstreamsResponse, ListVersionsRequest, ListVersionsResponse,
    RevokeTokenRequest, RevokeTokenResponse, RollbackRequest, Route, Status as ConfigStatus,
    Traffic, Upstream, UpstreamHealth,
};
use tonic::{Request, Response, Status};

use crate::api::auth::grpc_principal;
use crate::page::PageRequest;
use crate::service::ConfigService;

pub struct AdminApi {
    service: ConfigService,
}

impl AdminApi {
    pub fn new(service: ConfigService) -> Self {
        AdminApi { service }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_upstream(&self, request: Request<Upstream>) -> Reply<Upstream> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.create(request.into_inner(), &by).await?.0,
        ))
    }
    async fn get_upstream(&self, request: Request<GetRequest>) -> Reply<Upstream> {
        Ok(Response::new(
            self.service.get(&request.into_inner().name).await?,
        ))
    }
    async fn list_upstreams(&self, _: Request<ListRequest>) -> Reply<ListUpstreamsResponse> {
        Ok(Response::new(ListUpstreamsResponse {
            items: self.service.list().await?,
        }))
    }
    async fn replace_upstream(&self, request: Request<Upstream>) -> Reply<Upstream> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.replace(request.into_inner(), &by).await?.0,
        ))
    }
    async fn delete_upstream(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        let by = grpc_principal(&request)?;
        let version = self
            .service
            .delete::<Upstream>(&request.into_inner().name, &by)
            .await?;
        Ok(Response::new(DeleteResponse { version }))
    }

    async fn create_route(&self, request: Request<Route>) -> Reply<Route> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.create(request.into_inner(), &by).await?.0,
        ))
    }
    async fn get_route(&self, request: Request<GetRequest>) -> Reply<Route> {
        Ok(Response::new(
            self.service.get(&request.into_inner().name).await?,
        ))
    }
    async fn list_routes(&self, _: Request<ListRequest>) -> Reply<ListRoutesResponse> {
        Ok(Response::new(ListRoutesResponse {
            items: self.service.list().await?,
        }))
    }
    async fn replace_route(&self, request: Request<Route>) -> Reply<Route> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.replace(request.into_inner(), &by).await?.0,
        ))
    }
    async fn delete_route(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        let by = grpc_principal(&request)?;
        let version = self
            .service
            .delete::<Route>(&request.into_inner().name, &by)
            .await?;
        Ok(Response::new(DeleteResponse { version }))
    }

    async fn create_health_check(
        &self,
        request: Request<HealthCheckPolicy>,
    ) -> Reply<HealthCheckPolicy> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.create(request.into_inner(), &by).await?.0,
        ))
    }
    async fn get_health_check(&self, request: Request<GetRequest>) -> Reply<HealthCheckPolicy> {
        Ok(Response::new(
            self.service.get(&request.into_inner().name).await?,
        ))
    }
    async fn list_health_checks(&self, _: Request<ListRequest>) -> Reply<ListHealthChecksResponse> {
        Ok(Response::new(ListHealthChecksResponse {
            items: self.service.list().await?,
        }))
    }
    async fn replace_health_check(
        &self,
        request: Request<HealthCheckPolicy>,
    ) -> Reply<HealthCheckPolicy> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.replace(request.into_inner(), &by).await?.0,
        ))
    }
    async fn delete_health_check(&self, request: Request<DeleteRequest>) -> Reply<DeleteResponse> {
        let by = grpc_principal(&request)?;
        let version = self
            .service
            .delete::<HealthCheckPolicy>(&request.into_inner().name, &by)
            .await?;
        Ok(Response::new(DeleteResponse { version }))
    }

    async fn apply(&self, request: Request<ApplyRequest>) -> Reply<ApplyResponse> {
        let by = grpc_principal(&request)?;
        let config = request.into_inner().config.unwrap_or_default();
        Ok(Response::new(self.service.apply(config, &by).await?))
    }

    async fn list_data_planes(&self, _: Request<ListRequest>) -> Reply<ListDataPlanesResponse> {
        Ok(Response::new(ListDataPlanesResponse {
            items: self.service.dataplanes().await?,
        }))
    }

    async fn get_status(&self, _: Request<GetStatusRequest>) -> Reply<ConfigStatus> {
        Ok(Response::new(self.service.status().await?))
    }

    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Reply<ListVersionsResponse> {
        let items = self.service.versions(request.into_inner().limit).await?;
        Ok(Response::new(ListVersionsResponse { items }))
    }

    async fn get_version(&self, request: Request<GetVersionRequest>) -> Reply<ConfigVersion> {
        Ok(Response::new(
            self.service.version(request.into_inner().version).await?,
        ))
    }

    async fn rollback(&self, request: Request<RollbackRequest>) -> Reply<ApplyResponse> {
        let by = grpc_principal(&request)?;
        Ok(Response::new(
            self.service.rollback(request.into_inner().to, &by).await?,
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

    async fn list_tokens(&self, _: Request<ListRequest>) -> Reply<ListTokensResponse> {
        Ok(Response::new(ListTokensResponse {
            items: self.service.tokens().await?,
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
