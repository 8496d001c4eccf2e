//! The OpenAPI 3.1 document of the REST API, generated from the code: the paths from the
//! handlers' `#[utoipa::path]` attributes, collected by the same `OpenApiRouter` that builds the
//! axum router (so a route cannot exist without its description), and the bodies from the
//! `gateway.v1` descriptor set ([`proto`]). Served at `/openapi.json`; `controlplane/openapi.json`
//! is a committed copy that a test keeps equal to this output.

mod examples;
mod links;
mod proto;

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Title, version and security of the document; the paths and schemas come from the router.
pub fn finish(mut document: OpenApi) -> OpenApi {
    document.info = InfoBuilder::new()
        .title("gateway admin API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The REST admin API of the gateway's control plane. Bodies are the proto3 JSON mapping \
             of the gateway.v1 schema (field names as in the .proto files, 64-bit integers as \
             strings); errors are application/problem+json with a stable `reason`, the gRPC \
             status name. Send `Authorization: Bearer <token>`: admin tokens read and write, \
             viewer tokens only read.",
        ))
        .build();
    let components = document
        .components
        .get_or_insert_with(utoipa::openapi::Components::new);
    // Error bodies are named by the `IntoResponses` enums, which register no schemas.
    let mut problem = vec![(Problem::name().into_owned(), Problem::schema())];
    <Problem as ToSchema>::schemas(&mut problem);
    components.schemas.extend(problem);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    document.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    links::add(&mut document);
    examples::add(&mut document);
    document
}

pub const BEARER: &str = "bearer";

/// Declares a zero-sized stand-in for a `gateway.v1` message, whose schema comes from the
/// descriptor set: prost types cannot derive `ToSchema`.
macro_rules! proto_bodies {
    ($($marker:ident),* $(,)?) => {
        /// Stand-ins for the `gateway.v1` messages in `#[utoipa::path]` attributes.
        pub mod body {
            use super::*;
            $(
                pub struct $marker;
                impl PartialSchema for $marker {
                    fn schema() -> RefOr<Schema> {
                        proto::schema(concat!("gateway.v1.", stringify!($marker)))
                    }
                }
                impl ToSchema for $marker {
                    fn name() -> Cow<'static, str> {
                        Cow::Borrowed(concat!("gateway.v1.", stringify!($marker)))
                    }
                    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                        proto::dependencies(concat!("gateway.v1.", stringify!($marker)), schemas);
                    }
                }
            )*
        }
    };
}

proto_bodies!(
    Upstream,
    Route,
    HealthCheckPolicy,
    Certificate,
    Config,
    ApplyResponse,
    DataPlane,
    Status,
    ConfigVersion,
    RollbackRequest,
    UpstreamHealth,
    Traffic,
    Token,
    CreateTokenRequest,
    CreateTokenResponse,
    AuditEntry,
    DeleteResponse,
    FieldViolation,
);

/// Declares the `{"items": […], "next_page_token": "…"}` page of a message.
macro_rules! pages {
    ($($page:ident of $item:ident),* $(,)?) => {
        /// One page of a list.
        pub mod page {
            use super::*;
            $(
                pub struct $page;
                impl PartialSchema for $page {
                    fn schema() -> RefOr<Schema> {
                        page_schema(<body::$item as ToSchema>::name())
                    }
                }
                impl ToSchema for $page {
                    fn name() -> Cow<'static, str> {
                        Cow::Borrowed(stringify!($page))
                    }
                    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                        schemas.push((
                            <body::$item as ToSchema>::name().into_owned(),
                            <body::$item as PartialSchema>::schema(),
                        ));
                        <body::$item as ToSchema>::schemas(schemas);
                    }
                }
            )*
        }
    };
}

pages!(
    UpstreamPage of Upstream,
    RoutePage of Route,
    HealthCheckPolicyPage of HealthCheckPolicy,
    CertificatePage of Certificate,
    DataPlanePage of DataPlane,
    ConfigVersionPage of ConfigVersion,
    TokenPage of Token,
    AuditEntryPage of AuditEntry,
);

fn page_schema(item: Cow<'static, str>) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(item)),
            )
            .required("items")
            .property(
                "next_page_token",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "Pass as `page_token` for the next page; absent on the last page.",
                    )),
            )
            .build(),
    ))
}

/// An RFC 7396 merge patch of a resource: its fields, any subset; `null` removes a field.
pub struct MergePatch;

impl PartialSchema for MergePatch {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "JSON Merge Patch (RFC 7396) of the resource: objects merge, lists are \
                     replaced, null removes. The name cannot change.",
                ))
                .build(),
        ))
    }
}

impl ToSchema for MergePatch {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("MergePatch")
    }
}

/// RFC 9457 problem details, as every error is answered.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:gateway:problem:<reason in kebab case>`.
    r#type: String,
    title: String,
    status: u16,
    /// What went wrong, every field-level problem included.
    detail: String,
    /// Stable reason code: the gRPC status name (INVALID_ARGUMENT, NOT_FOUND, ABORTED, …).
    reason: String,
    /// Every field-level problem.
    errors: Vec<body::FieldViolation>,
    /// For FAILED_PRECONDITION on delete: the resources still referring to it.
    used_by: Option<Vec<String>>,
}

/// The errors of a read.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// Bad query parameters.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid token (`WWW-Authenticate: Bearer`).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// The token's role does not allow this.
    #[response(status = 403, content_type = "application/problem+json")]
    PermissionDenied(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The errors of a write.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// Invalid: `errors` names every field-level problem; nothing was written.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid token (`WWW-Authenticate: Bearer`).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// The token's role does not allow this.
    #[response(status = 403, content_type = "application/problem+json")]
    PermissionDenied(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Already exists (ALREADY_EXISTS), or still in use (FAILED_PRECONDITION, with `used_by`).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// An If-Match or If-None-Match precondition failed (ABORTED): read again and retry.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// Not JSON (or, for PATCH, not application/merge-patch+json).
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
}

/// Query parameters of every list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Items per page: default 100, at most 1000.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// `NAME=VALUE`; repeatable, all must match.
    label: Option<Vec<String>>,
}

/// Query parameters of `GET /v1/versions`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct VersionParams {
    /// Versions per page, newest first: default 100, at most 1000.
    page_size: Option<u32>,
    /// The older name of `page_size`.
    limit: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// Query parameters of `GET /v1/audit`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditParams {
    /// Entries per page, newest first: default 100, at most 1000.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// Only the entries of this actor (a token's name, `bootstrap` or `anonymous`).
    actor: Option<String>,
}

/// Query parameters of `GET /v1/tokens`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TokenListParams {
    /// Tokens per page: default 100, at most 1000.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// `?validate_only` of a single-resource write.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct WriteQuery {
    /// Check everything and answer as the write would, without committing.
    validate_only: Option<bool>,
}

/// Preconditions of a single-resource write, checked in the transaction that writes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct Preconditions {
    /// Write only if the resource's current ETag is one of these (`*`: if it exists); else 412.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
    /// `*`: write only if the resource does not exist; else 412.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

/// Query parameters of `POST /v1/apply`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ApplyParams {
    /// Check everything and answer with the plan, without committing.
    validate_only: Option<bool>,
    /// Also delete what the body does not name (only what carries every `selector` label).
    prune: Option<bool>,
    /// `NAME=VALUE`; repeatable: what `prune` may delete must carry all of them.
    selector: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    /// The committed `controlplane/openapi.json` is exactly what the code generates.
    #[test]
    fn committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = super::super::rest::openapi_json();
        if std::env::var_os("GATEWAY_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "controlplane/openapi.json is out of date with the code; regenerate it with\n\
             GATEWAY_UPDATE_OPENAPI=1 cargo test -p gateway-controlplane committed_document_is_current\n\
             and commit the result"
        );
    }

    #[test]
    fn document_is_openapi_3_1_with_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(&super::super::rest::openapi_json()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/v1/upstreams",
            "/v1/upstreams/{name}",
            "/v1/routes/{name}",
            "/v1/health-checks",
            "/v1/apply",
            "/v1/audit",
            "/v1/tokens",
            "/healthz",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let put = &paths["/v1/routes/{name}"]["put"];
        assert_eq!(put["operationId"], "UpsertRoute");
        assert_eq!(
            put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/gateway.v1.Route"
        );
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for schema in [
            "gateway.v1.Route",
            "gateway.v1.RouteMatch",
            "Problem",
            "RoutePage",
        ] {
            assert!(schemas.contains_key(schema), "{schema} missing");
        }
        assert_eq!(
            paths["/healthz"]["get"]["security"],
            serde_json::json!([{}]),
            "probes need no token"
        );
    }

    /// Links lead from where a name first appears to the operations on that resource, so a
    /// client (or a stateful fuzzer) reaches resources that exist.
    #[test]
    fn responses_link_to_the_operations_on_the_resource_they_name() {
        let document: serde_json::Value =
            serde_json::from_str(&super::super::rest::openapi_json()).unwrap();
        let paths = &document["paths"];
        let link = |path: &str, method: &str, status: &str, target: &str| {
            paths[path][method]["responses"][status]["links"][target].clone()
        };
        assert_eq!(
            link("/v1/upstreams", "post", "201", "GetUpstreamHealth"),
            serde_json::json!({
                "operationId": "GetUpstreamHealth",
                "parameters": {"name": "$response.body#/name"}
            })
        );
        assert_eq!(
            link("/v1/routes", "get", "200", "DeleteRoute")["parameters"]["name"],
            "$response.body#/items/0/name"
        );
        assert_eq!(
            link("/v1/routes/{name}", "put", "201", "PatchRoute")["parameters"]["name"],
            "$request.path.name"
        );
        assert_eq!(
            link("/v1/tokens", "post", "201", "RevokeToken")["parameters"]["name"],
            "$response.body#/token/name"
        );
        assert_eq!(
            link("/v1/versions", "get", "200", "GetVersion")["parameters"]["version"],
            "$response.body#/items/0/version"
        );
        // An operation does not link to itself.
        assert!(link("/v1/routes/{name}", "put", "200", "UpsertRoute").is_null());
    }
}
