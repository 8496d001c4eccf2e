//! What REST handlers take from a request, each failure a problem+json that says what was wrong:
//! JSON bodies in the schema's mapping, merge patches, query parameters and preconditions.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::page::PageRequest;
use crate::write::{Precondition, WriteOptions};

pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// A JSON body in the schema's mapping: JSON media types only, unknown fields refused.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = body(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// An RFC 7396 merge patch: `Content-Type: application/merge-patch+json` and a JSON object.
pub struct MergePatch(pub Value);

impl<S: Send + Sync> FromRequest<S> for MergePatch {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if media_type(request.headers()).as_deref() != Some(MERGE_PATCH) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "PATCH takes a JSON merge patch (RFC 7396): Content-Type: {MERGE_PATCH}"
            )));
        }
        let bytes = body(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(MergePatch)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

async fn body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

/// A path parameter; one that does not parse (`/v1/versions/-1`) is a problem+json 400 like
/// every other bad input, not axum's plain-text rejection.
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// The query string as `(key, value)` pairs, repeats kept (`?label=a=1&label=b=2`).
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// Refuses parameters the endpoint does not know: a typo (`?lable=`) must not pass silently.
    pub fn allow(&self, known: &[&str]) -> Result<&Self, ApiError> {
        if let Some((key, _)) = self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {key:?} (this endpoint takes: {known})"
            )));
        }
        Ok(self)
    }

    fn last(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn string(&self, key: &str) -> String {
        self.last(key).unwrap_or_default().to_owned()
    }

    pub fn number(&self, key: &str) -> Result<u32, ApiError> {
        match self.last(key) {
            None | Some("") => Ok(0),
            Some(value) => value.parse().map_err(|_| {
                ApiError::BadRequest(format!("{key}: {value:?} is not a whole number"))
            }),
        }
    }

    /// `?flag`, `?flag=true` or `?flag=1` are true; absent, `false` or `0` false.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.last(key) {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(value) => Err(ApiError::BadRequest(format!(
                "{key}: {value:?} is not true or false"
            ))),
        }
    }

    /// Every `?key=NAME=VALUE`, as a label selector (all must match).
    pub fn labels(&self, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let mut labels = BTreeMap::new();
        for (_, value) in self.0.iter().filter(|(k, _)| k == key) {
            match value.split_once('=') {
                Some((name, label)) if !name.is_empty() => {
                    labels.insert(name.to_owned(), label.to_owned());
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "{key}: expected NAME=VALUE, found {value:?}"
                    )));
                }
            }
        }
        Ok(labels)
    }

    pub fn page(&self, scope: &'static str) -> Result<PageRequest, ApiError> {
        PageRequest::new(scope, self.number("page_size")?, &self.string("page_token"))
    }
}

/// `If-Match` / `If-None-Match` and `?validate_only`: how a write may proceed.
pub fn write_options(headers: &HeaderMap, params: &Params) -> Result<WriteOptions, ApiError> {
    let header = |name: header::HeaderName| -> Result<Option<&str>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::BadRequest(format!("{name}: not ASCII")))
            })
            .transpose()
    };
    Ok(WriteOptions {
        precondition: Precondition::from_headers(
            header(header::IF_MATCH)?,
            header(header::IF_NONE_MATCH)?,
        )?,
        validate_only: params.flag("validate_only")?,
    })
}
