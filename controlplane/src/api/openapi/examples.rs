//! Valid example bodies for the resources a client creates, and the names they give as examples
//! of the `{name}` path parameters. They document the API, and they let a fuzzer (schemathesis,
//! which tries the examples first) create resources that the operations on `…/{name}` then find,
//! instead of answering 404 to every generated name. `POST /v1/apply` comes first in the
//! document and its example is the whole set, so the routes' upstream exists before the routes.

use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

/// One valid body per message, by schema name.
fn bodies() -> Vec<(&'static str, Value)> {
    let health_check = json!({
        "name": "web-health",
        "http": {"path": "/healthz", "expected_statuses": [{"from": 200, "to": 299}]},
        "interval_ms": 2000,
        "timeout_ms": 1000,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3
    });
    let upstream = json!({
        "name": "web",
        "labels": {"team": "web"},
        "targets": [{"address": "10.0.0.1:8080", "weight": 1}],
        "load_balancing": "LOAD_BALANCING_POLICY_ROUND_ROBIN",
        "health_check": "web-health"
    });
    let route = json!({
        "name": "web-root",
        "match": {"hosts": ["www.example.com"], "prefix": "/"},
        "upstream": "web"
    });
    let config = json!({
        "upstreams": [upstream.clone()],
        "routes": [route.clone()],
        "health_checks": [health_check.clone()]
    });
    vec![
        ("gateway.v1.HealthCheckPolicy", health_check),
        ("gateway.v1.Upstream", upstream),
        ("gateway.v1.Route", route),
        ("gateway.v1.Config", config),
        (
            "gateway.v1.CreateTokenRequest",
            json!({"name": "ci-reader", "role": "viewer"}),
        ),
    ]
}

/// Sets the examples on the message schemas and on the `{name}` of the paths whose collection
/// creates that message.
pub fn add(document: &mut OpenApi) {
    let bodies = bodies();
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for (name, body) in &bodies {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*name) {
            object.examples = vec![body.clone()];
        }
    }
    let mut names = Vec::new();
    for (path, item) in &document.paths.paths {
        let Some(body) = item.post.as_ref().and_then(|post| created(post, &bodies)) else {
            continue;
        };
        if let Some(name) = body.get("name").and_then(Value::as_str) {
            names.push((format!("{path}/{{name}}"), name.to_owned()));
        }
    }
    for (prefix, name) in names {
        for (path, item) in document.paths.paths.iter_mut() {
            if path != &prefix && !path.starts_with(&format!("{prefix}/")) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
                &mut item.post,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let RefOr::T(parameter) = parameter
                        && parameter.name == "name"
                        && let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut()
                    {
                        object.examples = vec![Value::from(name.clone())];
                    }
                }
            }
        }
    }
}

/// The example body a create takes, when it has one.
fn created<'a>(post: &Operation, bodies: &'a [(&'static str, Value)]) -> Option<&'a Value> {
    let RefOr::T(body) = post.request_body.as_ref()? else {
        return None;
    };
    let RefOr::T(content) = body.content.get("application/json")? else {
        return None;
    };
    let RefOr::Ref(reference) = content.schema.as_ref()? else {
        return None;
    };
    let name = reference
        .ref_location
        .strip_prefix("#/components/schemas/")?;
    bodies
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, body)| body)
}

#[cfg(test)]
mod tests {
    use gateway_proto::v1::{Config, CreateTokenRequest, HealthCheckPolicy, Route, Upstream};

    use super::*;

    /// Every example is a body the API takes: it reads as its message, and the served document
    /// carries it and the names it gives.
    #[test]
    fn examples_are_bodies_of_their_message_and_name_the_paths() {
        for (name, body) in bodies() {
            let read = match name {
                "gateway.v1.HealthCheckPolicy" => {
                    serde_json::from_value::<HealthCheckPolicy>(body).map(drop)
                }
                "gateway.v1.Upstream" => serde_json::from_value::<Upstream>(body).map(drop),
                "gateway.v1.Route" => serde_json::from_value::<Route>(body).map(drop),
                "gateway.v1.Config" => serde_json::from_value::<Config>(body).map(drop),
                "gateway.v1.CreateTokenRequest" => {
                    serde_json::from_value::<CreateTokenRequest>(body).map(drop)
                }
                other => panic!("no message for {other}"),
            };
            read.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let document: Value =
            serde_json::from_str(&super::super::super::rest::openapi_json()).unwrap();
        assert_eq!(
            document["components"]["schemas"]["gateway.v1.Route"]["examples"][0]["name"],
            "web-root"
        );
        let parameters = &document["paths"]["/v1/upstreams/{name}/health"]["get"]["parameters"];
        assert_eq!(parameters[0]["schema"]["examples"], json!(["web"]));
        let parameters = &document["paths"]["/v1/tokens/{name}"]["delete"]["parameters"];
        assert_eq!(parameters[0]["schema"]["examples"], json!(["ci-reader"]));
    }
}
