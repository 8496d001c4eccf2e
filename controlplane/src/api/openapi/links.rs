//! OpenAPI links (3.1 §4.8.20) from where a resource's name first appears to the operations on
//! that resource: the answer of a create (`POST /v1/routes` → `GetRoute`, `PatchRoute`, …), a
//! list page (its first item), and a replace's own path. A client can follow them, and a
//! stateful fuzzer (schemathesis) uses them to reach resources that exist instead of guessing
//! names that mostly answer 404.
//!
//! Derived from the paths themselves: `P/{param}…` is an item of the collection `P`, and the
//! name is found in a response body by looking `param` up in its schema (directly, one object
//! down as in `{"token": {"name": …}}`, or in a page's first item).

use std::collections::BTreeMap;

use utoipa::openapi::link::Link;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::{OpenApi, PathItem, RefOr};

/// Adds the links to every 2xx response that names a resource of a collection.
pub fn add(document: &mut OpenApi) {
    let schemas = document
        .components
        .as_ref()
        .map(|c| c.schemas.clone())
        .unwrap_or_default();
    let mut found = Vec::new();
    for (item_path, item) in &document.paths.paths {
        if let Some((collection, param)) = item_of(item_path) {
            found.extend(links_to(
                document, collection, param, item_path, item, &schemas,
            ));
        }
    }
    for found in found {
        let operation = document
            .paths
            .paths
            .get_mut(&found.path)
            .and_then(|item| operation_mut(item, found.method));
        if let Some(operation) = operation
            && let Some(RefOr::T(response)) = operation.responses.responses.get_mut(&found.status)
        {
            response.links.insert(found.name, RefOr::T(found.link));
        }
    }
}

/// `("/v1/routes", "name")` for `/v1/routes/{name}`; `None` for any other path.
fn item_of(path: &str) -> Option<(&str, &str)> {
    let (collection, rest) = path.split_once("/{")?;
    let param = rest.strip_suffix('}')?;
    (!param.contains(['/', '{', '}'])).then_some((collection, param))
}

/// A link to add to the `status` response of `method path`.
struct Found {
    path: String,
    method: Method,
    status: String,
    name: String,
    link: Link,
}

/// The links to the operations on `item_path` (and below it) from its collection's create and
/// list, and from the item's own writes.
fn links_to(
    document: &OpenApi,
    collection: &str,
    param: &str,
    item_path: &str,
    item: &PathItem,
    schemas: &BTreeMap<String, RefOr<Schema>>,
) -> Vec<Found> {
    let paths = &document.paths.paths;
    let below = format!("{item_path}/");
    let targets: Vec<&str> = paths
        .iter()
        .filter(|(path, _)| path.as_str() == item_path || path.starts_with(&below))
        .flat_map(|(_, item)| operations(item))
        .filter_map(|(_, op)| op.operation_id.as_deref())
        .collect();
    // (where, method, operation, how its 2xx answers name the resource: None = from the body)
    let mut sources: Vec<(&str, Method, &Operation, Option<String>)> = Vec::new();
    if let Some(list) = paths.get(collection) {
        for (method, op) in operations(list) {
            sources.push((collection, method, op, None));
        }
    }
    for (method, op) in operations(item) {
        if matches!(method, Method::Put | Method::Patch) {
            sources.push((
                item_path,
                method,
                op,
                Some(format!("$request.path.{param}")),
            ));
        }
    }
    let mut found = Vec::new();
    for (path, method, operation, value) in sources {
        for (status, response) in &operation.responses.responses {
            let RefOr::T(response) = response else {
                continue;
            };
            if !status.starts_with('2') {
                continue;
            }
            let value = value.clone().or_else(|| {
                let content = match response.content.get("application/json")? {
                    RefOr::T(content) => content,
                    RefOr::Ref(_) => return None,
                };
                let pointer = pointer(content.schema.as_ref()?, param, schemas, 1)?;
                Some(format!("$response.body#{pointer}"))
            });
            let Some(value) = value else { continue };
            for target in &targets {
                if operation.operation_id.as_deref() == Some(*target) {
                    continue;
                }
                found.push(Found {
                    path: path.to_owned(),
                    method,
                    status: status.clone(),
                    name: (*target).to_owned(),
                    link: Link::builder()
                        .operation_id(*target)
                        .parameter(param, value.clone())
                        .build(),
                });
            }
        }
    }
    found
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

fn operations(item: &PathItem) -> impl Iterator<Item = (Method, &Operation)> {
    [
        (Method::Get, &item.get),
        (Method::Put, &item.put),
        (Method::Post, &item.post),
        (Method::Patch, &item.patch),
        (Method::Delete, &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, op)| Some((method, op.as_ref()?)))
}

fn operation_mut(item: &mut PathItem, method: Method) -> Option<&mut Operation> {
    match method {
        Method::Get => item.get.as_mut(),
        Method::Put => item.put.as_mut(),
        Method::Post => item.post.as_mut(),
        Method::Patch => item.patch.as_mut(),
        Method::Delete => item.delete.as_mut(),
    }
}

/// The JSON pointer to `field` in a body of this schema: `/name`, `/token/name` (one object
/// down, `depth` levels at most) or `/items/0/name` (the first item of a list).
fn pointer(
    schema: &RefOr<Schema>,
    field: &str,
    schemas: &BTreeMap<String, RefOr<Schema>>,
    depth: usize,
) -> Option<String> {
    let schema = resolve(schema, schemas)?;
    match schema {
        Schema::Object(object) => {
            if object.properties.contains_key(field) {
                return Some(format!("/{field}"));
            }
            if depth == 0 {
                return None;
            }
            object.properties.iter().find_map(|(name, property)| {
                pointer(property, field, schemas, depth - 1).map(|rest| format!("/{name}{rest}"))
            })
        }
        Schema::Array(array) => match &array.items {
            ArrayItems::RefOrSchema(items) => {
                pointer(items, field, schemas, depth).map(|rest| format!("/0{rest}"))
            }
            _ => None,
        },
        _ => None,
    }
}

fn resolve<'a>(
    schema: &'a RefOr<Schema>,
    schemas: &'a BTreeMap<String, RefOr<Schema>>,
) -> Option<&'a Schema> {
    match schema {
        RefOr::T(schema) => Some(schema),
        RefOr::Ref(reference) => {
            let name = reference
                .ref_location
                .strip_prefix("#/components/schemas/")?;
            match schemas.get(name)? {
                RefOr::T(schema) => Some(schema),
                RefOr::Ref(_) => None,
            }
        }
    }
}
