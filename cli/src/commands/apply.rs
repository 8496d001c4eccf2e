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
//! JSON is read by the same parser, being YAML too.
//!
//! `-f -` reads standard input; `-f DIR` reads every `*.yaml`, `*.yml` and `*.json` file directly
//! inside DIR, in name order; `-f` may be repeated. All documents of all files are sent as one
//! `Apply`: every resource is created or replaced, or, on any error, nothing changes. Resources
//! not in the files are left alone unless `--prune` (scoped by `--selector` labels) deletes them
//! in the same transaction; `--dry-run` asks for the plan without committing.
//!
//! Every problem found in the files is reported before anything is sent, each naming the file,
//! the line and column of the offending key or value, the document (counted from 1) and the
//! resource, then what is wrong:
//! `gateway.yaml:14:3: document 2 (Route "api"): match: unknown field "pathprefix" (expected one
//! of: hosts, methods, exact, prefix)`. The positions come from [`located`], a tree of the
//! document that keeps them.
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
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter as _, Spanned};

use super::Context;
use crate::flags;
use crate::output::{self, API_VERSION, Format};
use located::{Position, Step, Tree};

mod located;
mod wait;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A YAML or JSON file, `-` for standard input, or a directory of *.yaml/*.yml/*.json
    /// files; repeatable
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
            let files = config_files(path)?;
            if files.is_empty() {
                bail!(
                    "{}: no *.yaml, *.yml or *.json files in this directory",
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

fn config_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("{}", dir.display()))?.path();
        let is_config = path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if is_config && path.is_file() {
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

/// Where a document came from, for errors: `gateway.yaml:14:3: document 2 (Route "api")`.
struct Origin<'a> {
    file: &'a str,
    document: usize,
    what: Option<String>,
}

/// One thing wrong with a document, and where in the file it is when that is known.
struct Problem {
    at: Option<Position>,
    message: String,
}

impl Problem {
    fn at(at: Option<Position>, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }
}

impl Origin<'_> {
    fn error(&self, problem: Problem) -> String {
        let mut text = self.file.to_owned();
        if let Some(at) = problem.at {
            text.push_str(&format!(":{at}"));
        }
        text.push_str(&format!(": document {}", self.document));
        if let Some(what) = &self.what {
            text.push_str(&format!(" ({what})"));
        }
        format!("{text}: {}", problem.message)
    }
}

/// Parses every document of every source into one config; on failure, every problem found.
pub fn parse_sources(sources: &[Source]) -> Result<Config, Vec<String>> {
    let mut config = Config::default();
    let mut errors = Vec::new();
    // (kind, name) -> "file:line:column (document N)", to report duplicates where both copies are.
    let mut seen: HashMap<(Kind, String), String> = HashMap::new();
    for source in sources {
        let mut reader = source.text.as_bytes();
        let documents = serde_saphyr::read::<_, Spanned<Tree>>(&mut reader);
        for (index, document) in documents.enumerate() {
            let mut origin = Origin {
                file: &source.name,
                document: index + 1,
                what: None,
            };
            let document = match document {
                Ok(document) => document,
                Err(e) => {
                    errors.push(origin.error(yaml_error(&e)));
                    continue;
                }
            };
            // A sequence of documents (what `list -o json` prints) counts as its items.
            let items = match &document.value {
                Tree::Sequence(items) => items.iter().collect(),
                _ => vec![&document],
            };
            for item in items {
                origin.what = None;
                if let Err(problem) = parse_document(item, &mut origin, &mut config, &mut seen) {
                    errors.push(origin.error(problem));
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
    document: &Spanned<Tree>,
    origin: &mut Origin<'_>,
    config: &mut Config,
    seen: &mut HashMap<(Kind, String), String>,
) -> Result<(), Problem> {
    let start = Position::of(document.referenced);
    let value_at = |key: &str| Tree::position(document, &[Step::Key(key)], true);
    let value = document.value.to_value();
    let Value::Object(mut fields) = value else {
        return Err(Problem::at(
            start,
            format!(
                "expected a mapping with `kind:` and the resource's fields, found {}",
                value_type(&value)
            ),
        ));
    };
    let kind = match fields.remove("kind") {
        None => {
            return Err(Problem::at(
                start,
                format!("missing `kind` (expected one of {})", kinds()),
            ));
        }
        Some(Value::String(kind)) => Kind::from_document_kind(&kind).ok_or_else(|| {
            Problem::at(
                value_at("kind"),
                format!("unknown kind {kind:?} (expected one of {})", kinds()),
            )
        })?,
        Some(other) => {
            return Err(Problem::at(
                value_at("kind"),
                format!("unknown kind {other} (expected one of {})", kinds()),
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
            return Err(Problem::at(
                value_at("api_version"),
                format!("unsupported api_version {other} (expected {API_VERSION})"),
            ));
        }
    }
    if kind == Kind::Upstream {
        default_weights(&mut fields);
    }
    let value = Value::Object(fields);
    match kind {
        Kind::Upstream => add::<Upstream>(value, document, origin, config, seen),
        Kind::Route => add::<Route>(value, document, origin, config, seen),
        Kind::HealthCheck => add::<HealthCheckPolicy>(value, document, origin, config, seen),
        Kind::Certificate => add::<Certificate>(value, document, origin, config, seen),
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
    document: &Spanned<Tree>,
    origin: &Origin<'_>,
    config: &mut Config,
    seen: &mut HashMap<(Kind, String), String>,
) -> Result<(), Problem> {
    let resource: R = serde_path_to_error::deserialize(value).map_err(|e| {
        let raw = e.inner().to_string();
        let steps = steps(e.path());
        // The path of an unknown field ends with the field itself, which the message names;
        // the position is that of its key, any other error's that of the offending value.
        let unknown = unknown_name(&raw, "unknown field");
        let at = Tree::position(document, &steps, unknown.is_none());
        let mut path = steps.as_slice();
        if let (Some(unknown), Some((Step::Key(last), parent))) = (unknown, path.split_last())
            && *last == unknown
        {
            path = parent;
        }
        let mut message = field_error(&raw);
        let path = dotted(path);
        if path.ends_with("_ms") && raw.contains("invalid") {
            message.push_str(" (durations are whole milliseconds, e.g. 2000)");
        }
        if path.is_empty() {
            Problem::at(at, message)
        } else {
            Problem::at(at, format!("{path}: {message}"))
        }
    })?;
    let name_at = Tree::position(document, &[Step::Key("name")], true);
    if resource.name().is_empty() {
        return Err(Problem::at(name_at, "missing `name`"));
    }
    let mut here = origin.file.to_owned();
    if let Some(at) = name_at {
        here.push_str(&format!(":{at}"));
    }
    here.push_str(&format!(" (document {})", origin.document));
    let key = (R::KIND, resource.name().to_owned());
    if let Some(first) = seen.get(&key) {
        return Err(Problem::at(
            name_at,
            format!(
                "{} {:?} is already defined at {first}",
                R::KIND.document_kind(),
                resource.name()
            ),
        ));
    }
    seen.insert(key, here);
    R::list_mut(config).push(resource);
    Ok(())
}

/// The steps of a path `serde_path_to_error` reports, as far as they lead into the document.
fn steps(path: &serde_path_to_error::Path) -> Vec<Step<'_>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map_while(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key)),
            Segment::Enum { variant } => Some(Step::Key(variant)),
            Segment::Unknown => None,
        })
        .collect()
}

/// `match.hosts[1]`, as people read a path.
fn dotted(path: &[Step<'_>]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
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

/// The YAML parser's message on one line, its position in front like every other problem's
/// (its source snippet would repeat the file).
fn yaml_error(error: &serde_saphyr::Error) -> Problem {
    let message = DefaultMessageFormatter.format_message(error.without_snippet());
    Problem::at(
        error.location().and_then(Position::of),
        // The parser's own rendering would neutralise control characters; so does this.
        format!("invalid YAML: {}", message.replace(char::is_control, " ")),
    )
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
    // Numbers arrive as strings in the JSON mapping, so a word where a number belongs fails
    // as Rust's integer parser puts it.
    message
        .replace('`', "\"")
        .replace("invalid digit found in string", "expected a whole number")
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
