//! The admin listener: liveness, readiness and what config is in service.
//!
//! - `/healthz`: 200 while the process runs. It never depends on the control plane, so losing
//!   the control plane never gets a serving data plane restarted.
//! - `/readyz`: 503 until a config is applied (from a control plane or the cache), then 200.
//! - `/config`: version, hash, staleness, connection and resource names, as JSON.
//! - `/metrics`: Prometheus text format (see [`crate::telemetry::exposition`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::Gateway;
use crate::proxy::{ProxyBody, drain, json_response, stop_requested};
use crate::telemetry::exposition;

pub fn respond<B>(gateway: &Gateway, request: &Request<B>) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method not allowed" }),
        );
    }
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" if gateway.is_draining() => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not ready", "reason": "draining" }),
        ),
        "/readyz" => match gateway.active() {
            Some(_) => json_response(StatusCode::OK, &json!({ "status": "ready" })),
            None => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "not ready", "reason": "no configuration applied yet" }),
            ),
        },
        "/config" => json_response(StatusCode::OK, &config_json(gateway)),
        "/metrics" => metrics_response(gateway),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
    }
}

fn metrics_response(gateway: &Gateway) -> Response<ProxyBody> {
    let body = exposition::render(gateway);
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    response
}

fn config_json(gateway: &Gateway) -> serde_json::Value {
    let connected = gateway.is_connected();
    let Some(active) = gateway.active() else {
        return json!({
            "version": 0,
            "hash": "",
            "stale": false,
            "connected": connected,
            "applied_at": null,
            "routes": [],
            "upstreams": [],
            "health_checks": [],
        });
    };
    let unix_seconds = active
        .applied_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let table = &active.table;
    json!({
        "version": active.version,
        "hash": active.hash,
        "stale": active.is_stale(),
        "connected": connected,
        "applied_at": humantime::format_rfc3339_seconds(active.applied_at).to_string(),
        "applied_at_unix": unix_seconds,
        "routes": table.route_names().collect::<Vec<_>>(),
        "upstreams": table.upstream_names().collect::<Vec<_>>(),
        "health_checks": table.health_check_names().collect::<Vec<_>>(),
    })
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting an admin connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_requested(&mut shutdown) => break,
        };
        let gateway = Arc::clone(&gateway);
        let service = service_fn(move |request: Request<Incoming>| {
            let response = respond(&gateway, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection =
            graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        });
    }
    drain(graceful, Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(gateway: &Gateway, path: &str) -> StatusCode {
        let request = Request::get(path).body(()).unwrap();
        respond(gateway, &request).status()
    }

    #[test]
    fn healthz_is_always_ok_and_readyz_waits_for_a_config() {
        let gateway = Gateway::default();
        assert_eq!(get(&gateway, "/healthz"), StatusCode::OK);
        assert_eq!(get(&gateway, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&gateway, "/config"), StatusCode::OK);
        assert_eq!(get(&gateway, "/metrics"), StatusCode::OK);
        assert_eq!(get(&gateway, "/nope"), StatusCode::NOT_FOUND);
    }
}
