//! One target's probe loop: `GET <path>` every interval; `healthy_threshold` successes in a row
//! make it healthy, `unhealthy_threshold` failures in a row make it unhealthy.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Uri, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::HealthPolicy;
use crate::state::TargetState;

pub async fn run(target: Authority, policy: HealthPolicy, state: Arc<TargetState>) {
    let upstream = &state.upstream;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(policy.timeout));
    connector.set_nodelay(true);
    // One connection per probe: a probe also checks that the target accepts connections.
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(target.clone())
        .path_and_query(policy.path.as_str())
        .build();
    let Ok(uri) = uri else {
        tracing::warn!(%upstream, target = %target, path = %policy.path, "cannot build the health-check URI");
        return;
    };
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ticks = tokio::time::interval(policy.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = check(&client, &uri, &target, &policy).await;
        let was_healthy = state.is_passing_checks();
        match outcome {
            Ok(()) => {
                (successes, failures) = (successes.saturating_add(1), 0);
                if !was_healthy && successes >= policy.healthy_threshold {
                    state.set_passing_checks(true);
                    tracing::info!(%upstream, target = %target, health_check = %policy.name, "target is healthy");
                }
            }
            Err(cause) => {
                (successes, failures) = (0, failures.saturating_add(1));
                if was_healthy && failures >= policy.unhealthy_threshold {
                    state.set_passing_checks(false);
                    tracing::warn!(%upstream, target = %target, health_check = %policy.name, %cause, "target is unhealthy");
                }
            }
        }
    }
}

async fn check(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &Uri,
    target: &Authority,
    policy: &HealthPolicy,
) -> Result<(), String> {
    let request = Request::get(uri.clone())
        .header(header::HOST, target.as_str())
        .header(header::USER_AGENT, "gateway-dataplane health check")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(policy.timeout, client.request(request)).await {
        Err(_) => Err(format!("no answer within {:?}", policy.timeout)),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(response)) if policy.is_healthy_status(response.status().as_u16()) => Ok(()),
        Ok(Ok(response)) => Err(format!("status {}", response.status())),
    }
}
