//! `gatewayctl apply -f FILE`: declarative config from YAML, applied in one transaction.
//!
//! # The apply file format
//!
//! A file holds one or more YAML documents separated by `---`. Each document is one resource:
//!
//! ```yaml
//! kind: HealthCheckPolicy        # Upstream | Route | HealthCheckPolicy | Certificate (required)
//! api_version: gateway/v1        # optional; any other value is an error
//! name: hc
//! http: {path: /healthz, interval_ms: 2000, timeout_ms: 1000,
//!        healthy_threshold: 2, unhealthy_threshold: 3,
//!        expected_statuses: [{from: 200, to: 299}]}
//! ---
//! kind: Upstream
//! name: web
//! labels: {team: web}
//! targets:
//!   - {address: "10.0.0.1:8080", weight: 3}
//!   - {address: "10.0.0.2:8080"}       # weight defaults to 1
//! load_balancing: LOAD_BALANCING_POLICY_ROUND_ROBIN
//! health_check: hc
//! connect_timeout_ms: 2000
//! ---
//! kind: Route
//! name: api
//! match: {hosts: [api.example.com], prefix: /v1, methods: [GET, POST]}   # or exact: /v1
//! priority: 10
//! upstream: web
//! request_headers: {set: [{name: x-env, value: prod}], remove: [x-debug]}
//! timeout_ms: 5000
//! ---
//! kind: Certificate
//! name: site
//! certificate_pem: |            # the leaf first, then intermediates
//!   -----BEGIN CERTIFICATE-----
//!   …
//! private_key_pem: |            # write-only; omit it to keep the stored key of the same chain
//!   -----BEGIN PRIVATE KEY-----
//!   …
//! sni: [example.com, "*.example.com"]
//! ```
//!
//! Besides `kind` and `api_version`, the fields are those of the `gateway.v1` message
//! (`proto/gateway/v1/resources.proto`) in the proto3 JSON mapping with snake_case names: exactly
//! what `gatewayctl <noun> get NAME -o yaml` prints, so its output can be applied as is. Durations
//! are whole milliseconds (`*_ms`), enums are their full names, omitted fields take their zero
//! value, and an unknown field is an error. Empty documents are skipped and not counted. A
//! document may also be a sequence of such documents (a JSON array, what `list -o json` prints).
//!
//! `-f -` reads standard input; `-f DIR` reads every `*.yaml` and `*.yml` file directly inside
//! DIR, in name order; `-f` may be repeated. All documents of all files are sent as one `Apply`:
//! every resource is created or replaced, or, on any error, nothing changes. Resources not in the
//! files are left alone unless `--prune` (scoped by `--selector` labels) deletes them in the same
//! transaction; `--dry-run` asks for the plan without committing. Every problem found in the files is reported, each naming the file,
//! the document (counted from 1) and what is wrong, before anything is sent.
//!
//! With `--wait`, the command then follows the new version to the data planes (see [`wait`]).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use gateway_proto::kind::{Kind, Resource};
use gateway_proto::v1::{
    ApplyRequest, ApplyResponse, Certificate, Config, HealthCheckPolicy, Route, Upstream,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Context;
use crate::flags;
use crate::output::{self, API_VERSION, Format};

mod wait;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A YAML file, `-` for standard input, or a directory of *.yaml/*.yml files; repeatable
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Then wait until every connected data plane has applied the new version; fail, naming
    /// them, if one rejects it or some are still behind at the timeout
    #[arg(long)]
    wait: bool,
    /// How long --wait waits
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "wait",
          value_parser = flags::duration_ms)]
    timeout: u32,
    /// Show what would be created, updated, deleted and left unchanged, and change nothing (the
    /// control plane checks everything, as for a real apply)
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// Also delete the resources the files do not name; with --selector, only those carrying
    /// every given label. Nothing is ever deleted without this flag
    #[arg(long)]
    prune: bool,
    /// A label (KEY=VALUE, repeatable) a resource must carry for --prune to delete it
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", requires = "prune",
          value_parser = flags::key_value)]
    selector: Vec<(String, String)>,
}

pub async fn run(ctx: &Context, args: ApplyArgs) -> anyhow::Result<()> {
    let sources = read_sources(&args.files)?;
    let config = parse_sources(&sources).map_err(|errors| anyhow!(problems(&errors)))?;
    if config.resource_count() == 0 && !args.prune {
        bail!("no resources found in {}", names(&sources));
    }
    let mut client = ctx.client().await?;
    let response = client
        .apply(ApplyRequest {
            config: Some(config),
            validate_only: args.dry_run,
            prune: args.prune,
            prune_selector: args.selector.into_iter().collect(),
        })
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    if ctx.format == Format::Name {
        output::names(&touched(&response))?;
    } else {
        output::message(ctx.format, &response, &summary(&response, args.dry_run))?;
    }
    if args.wait {
        let timeout = Duration::from_millis(u64::from(args.timeout));
        wait::wait_for(ctx, response.version, timeout).await?;
    }
    Ok(())
}

/// One problem on its own; several as a list, the way the control plane reports violations.
pub(crate) fn problems(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        _ => {
            let mut text = format!(
                "{} problems in the apply files, nothing was sent:",
                errors.len()
            );
            for error in errors {
                text.push_str("\n  - ");
                text.push_str(error);
            }
            text
        }
    }
}

/// One line per resource, then `applied version N: created 1, updated 0, deleted 0, unchanged 2`
/// (for a dry run, the plan: `would create …` and `dry run, nothing applied: …`).
fn summary(response: &ApplyResponse, dry_run: bool) -> String {
    let groups = [
        (
            if dry_run { "would create" } else { "created" },
            &response.created,
        ),
        (
            if dry_run { "would update" } else { "updated" },
            &response.updated,
        ),
        (
            if dry_run { "would delete" } else { "deleted" },
            &response.deleted,
        ),
        ("unchanged", &response.unchanged),
    ];
    let mut text = String::new();
    for (verb, names) in groups {
        for name in names {
            text.push_str(&format!("  {verb} {name}\n"));
        }
    }
    let (created, updated, deleted, unchanged) = (
        response.created.len(),
        response.updated.len(),
        response.deleted.len(),
        response.unchanged.len(),
    );
    if dry_run {
        text.push_str(&format!(
            "dry run, nothing applied: would create {created}, update {updated}, delete {deleted}; {unchanged} unchanged\n"
        ));
    } else {
        text.push_str(&format!(
            "applied version {}: created {created}, updated {updated}, deleted {deleted}, unchanged {unchanged}\n",
            response.version
        ));
    }
    text
}

/// Every resource the apply named or pruned, for `-o name`.
fn touched(response: &ApplyResponse) -> Vec<String> {
    [
        &response.created,
        &response.updated,
        &response.deleted,
        &response.unchanged,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

/// One file's text and the name errors use for it.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

pub(crate) fn names(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            sources.push(Source {
                name: "<stdin>".into(),
                text,
            });
        } else if path.is_dir() {
            let files = yaml_files(path)?;
            if files.is_empty() {
                bail!(
                    "{}: no *.yaml or *.yml files in this directory",
                    path.display()
                );
            }
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("{}", dir.display()))?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

/// Where a document came from, for errors: `gateway.yaml: document 2 (Route "api")`.
struct Origin<'a> {
    file: &'a str,
    document: usize,
    what: Option<String>,
}

impl Origin<'_> {
    fn error(&self, message: impl std::fmt::Display) -> String {
        match &self.what {
            Some(what) => format!(
                "{}: document {} ({what}): {message}",
                self.file, self.document
            ),
            None => format!("{}: document {}: {message}", self.file, self.document),
        }
    }
}

/// Parses every document of every source into one config; on failure, every problem found.
pub fn parse_sources(sources: &[Source]) -> Result<Config, Vec<String>> {
    let mut config = Config::default();
    let mut errors = Vec::new();
    // (kind, name) -> "file document N", to report duplicates where both copies are.
    let mut seen: HashMap<(Kind, String), String> = HashMap::new();
    for source in sources {
        let mut reader = source.text.as_bytes();
        let documents = serde_saphyr::read::<_, Value>(&mut reader);
        for (index, document) in documents.enumerate() {
            let mut origin = Origin {
                file: &source.name,
                document: index + 1,
                what: None,
            };
            let value = match document {
                Ok(value) => value,
                Err(e) => {
                    errors.push(origin.error(yaml_error(&e)));
                    continue;
                }
            };
            // A sequence of documents (what `list -o json` prints) counts as its items.
            let items = match value {
                Value::Array(items) => items,
                value => vec![value],
            };
            for item in items {
                origin.what = None;
                if let Err(message) = parse_document(item, &mut origin, &mut config, &mut seen) {
                    errors.push(origin.error(message));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn parse_document(
    value: Value,
    origin: &mut Origin<'_>,
    config: &mut Config,
    seen: &mut HashMap<(Kind, String), String>,
) -> Result<(), String> {
    let Value::Object(mut fields) = value else {
        return Err(format!(
            "expected a mapping with `kind:` and the resource's fields, found {}",
            value_type(&value)
        ));
    };
    let kind = match fields.remove("kind") {
        None => return Err(format!("missing `kind` (expected one of {})", kinds())),
        Some(Value::String(kind)) => Kind::from_document_kind(&kind)
            .ok_or_else(|| format!("unknown kind {kind:?} (expected one of {})", kinds()))?,
        Some(other) => {
            return Err(format!(
                "unknown kind {other} (expected one of {})",
                kinds()
            ));
        }
    };
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    origin.what = Some(if name.is_empty() {
        kind.document_kind().to_owned()
    } else {
        format!("{} {name:?}", kind.document_kind())
    });
    match fields.remove("api_version") {
        None => {}
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => {
            return Err(format!(
                "unsupported api_version {other} (expected {API_VERSION})"
            ));
        }
    }
    if kind == Kind::Upstream {
        default_weights(&mut fields);
    }
    let value = Value::Object(fields);
    match kind {
        Kind::Upstream => add::<Upstream>(value, origin, config, seen),
        Kind::Route => add::<Route>(value, origin, config, seen),
        Kind::HealthCheck => add::<HealthCheckPolicy>(value, origin, config, seen),
        Kind::Certificate => add::<Certificate>(value, origin, config, seen),
    }
}

/// A target written without `weight` gets weight 1, as `--target HOST:PORT` does; an explicit
/// `weight: 0` is left for validation to reject.
fn default_weights(fields: &mut serde_json::Map<String, Value>) {
    let Some(Value::Array(targets)) = fields.get_mut("targets") else {
        return;
    };
    for target in targets {
        if let Value::Object(target) = target {
            target.entry("weight").or_insert(Value::from(1));
        }
    }
}

fn add<R: Resource + DeserializeOwned>(
    value: Value,
    origin: &Origin<'_>,
    config: &mut Config,
    seen: &mut HashMap<(Kind, String), String>,
) -> Result<(), String> {
    let resource: R = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        let raw = e.into_inner().to_string();
        // The path of an unknown field ends with the field itself, which the message names.
        if let Some(unknown) = unknown_name(&raw, "unknown field")
            && let Some(parent) = path.strip_suffix(unknown)
        {
            path = parent.trim_end_matches('.').to_owned();
        }
        let mut message = field_error(&raw);
        if path.ends_with("_ms") && raw.contains("invalid") {
            message.push_str(" (durations are whole milliseconds, e.g. 2000)");
        }
        if path.is_empty() || path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })?;
    if resource.name().is_empty() {
        return Err("missing `name`".into());
    }
    let here = format!("{} document {}", origin.file, origin.document);
    let key = (R::KIND, resource.name().to_owned());
    if let Some(first) = seen.get(&key) {
        return Err(format!(
            "{} {:?} is already defined in {first}",
            R::KIND.document_kind(),
            resource.name()
        ));
    }
    seen.insert(key, here);
    R::list_mut(config).push(resource);
    Ok(())
}

fn kinds() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.document_kind())
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The YAML parser's message on one line (its source snippet would repeat the file).
fn yaml_error(error: &serde_saphyr::Error) -> String {
    format!("invalid YAML: {error}")
}

/// Rewrites serde's messages for people who write YAML: `unknown field "pathh" (expected one of:
/// hosts, methods, exact, prefix; did you mean "path"?)`. Only snake_case names are offered,
/// though the JSON mapping also accepts their lowerCamelCase aliases.
fn field_error(message: &str) -> String {
    for what in ["unknown field", "unknown variant"] {
        let Some(unknown) = unknown_name(message, what) else {
            continue;
        };
        let rest = &message[what.len() + unknown.len() + 3..];
        let expected: Vec<&str> = rest
            .strip_prefix(", expected one of ")
            .or_else(|| rest.strip_prefix(", expected "))
            .unwrap_or_default()
            .split(", ")
            .flat_map(|s| s.split(" or "))
            .map(|s| s.trim_matches('`'))
            .filter(|s| !s.is_empty())
            .filter(|s| what == "unknown variant" || !s.bytes().any(|b| b.is_ascii_uppercase()))
            .collect();
        let mut text = format!("{what} {unknown:?}");
        if !expected.is_empty() {
            text.push_str(&format!(" (expected one of: {}", expected.join(", ")));
            if let Some(close) = closest(unknown, &expected) {
                text.push_str(&format!("; did you mean {close:?}?"));
            }
            text.push(')');
        }
        return text;
    }
    message.replace('`', "\"")
}

/// `X` in serde's "unknown field `X`, expected …".
fn unknown_name<'a>(message: &'a str, what: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(what)?.strip_prefix(" `")?;
    Some(rest.split_once('`')?.0)
}

/// The expected name within edit distance 2 of `word`, if there is one.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;
