//! Authentication on both listeners: an axum middleware for REST and a tower layer for gRPC.
//! Each works out what the call needs ([`Access`]), lets the [`Authenticator`] resolve the bearer
//! token, and puts the [`Principal`] in the request's extensions for the handlers (and the audit
//! log). Probes (`/healthz`, `/readyz`, `grpc.health.v1`), reflection and `/openapi.json` stay open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{Access, Authenticator, Principal};

/// REST: every route behind this middleware needs a token granting the method's access.
pub async fn rest(State(auth): State<Authenticator>, mut request: Request, next: Next) -> Response {
    let access = rest_access(request.method(), request.uri().path());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match auth.check(authorization, access).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => {
            let unauthenticated = matches!(error, crate::error::ApiError::Unauthenticated(_));
            let mut response = error.into_response();
            if unauthenticated {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gateway\""),
                );
            }
            response
        }
    }
}

fn rest_access(method: &Method, path: &str) -> Access {
    if path == "/v1/tokens" || path.starts_with("/v1/tokens/") {
        Access::ManageTokens
    } else if method == Method::GET || method == Method::HEAD {
        Access::Read
    } else {
        Access::Write
    }
}

/// What a gRPC method needs; `None` for the open services (health, reflection).
fn grpc_access(path: &str) -> Option<Access> {
    if let Some(method) = path.strip_prefix("/gateway.v1.AdminService/") {
        Some(match method {
            "CreateToken" | "ListTokens" | "RevokeToken" => Access::ManageTokens,
            m if m.starts_with("Get") || m.starts_with("List") => Access::Read,
            _ => Access::Write,
        })
    } else if path.starts_with("/gateway.v1.DiscoveryService/") {
        Some(Access::Discovery)
    } else {
        None
    }
}

/// gRPC: a tower layer in front of every service of the server.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    auth: Authenticator,
}

impl GrpcAuthLayer {
    pub fn new(auth: Authenticator) -> Self {
        GrpcAuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            auth: self.auth.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    auth: Authenticator,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<axum::http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        // The clone is the one that is ready; keep it for this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let Some(access) = grpc_access(request.uri().path()) else {
                return inner.call(request).await;
            };
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match auth.check(authorization.as_deref(), access).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

/// The caller of a gRPC method, put there by [`GrpcAuth`].
pub fn grpc_principal<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("no principal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_methods_need_the_right_access() {
        let admin = "/gateway.v1.AdminService/";
        assert_eq!(
            grpc_access(&format!("{admin}ListRoutes")),
            Some(Access::Read)
        );
        assert_eq!(
            grpc_access(&format!("{admin}GetStatus")),
            Some(Access::Read)
        );
        assert_eq!(
            grpc_access(&format!("{admin}CreateRoute")),
            Some(Access::Write)
        );
        assert_eq!(
            grpc_access(&format!("{admin}Rollback")),
            Some(Access::Write)
        );
        assert_eq!(
            grpc_access(&format!("{admin}ListTokens")),
            Some(Access::ManageTokens)
        );
        assert_eq!(
            grpc_access("/gateway.v1.DiscoveryService/Stream"),
            Some(Access::Discovery)
        );
        assert_eq!(grpc_access("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn rest_methods_need_the_right_access() {
        assert_eq!(rest_access(&Method::GET, "/v1/routes"), Access::Read);
        assert_eq!(rest_access(&Method::PUT, "/v1/routes/a"), Access::Write);
        assert_eq!(
            rest_access(&Method::GET, "/v1/tokens"),
            Access::ManageTokens
        );
        assert_eq!(
            rest_access(&Method::DELETE, "/v1/tokens/ci"),
            Access::ManageTokens
        );
    }
}
