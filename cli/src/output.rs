//! Rendering of command results as `-o table|wide|json|yaml`.
//!
//! Invariants: `json` is the proto3 JSON mapping of the message (or an array of them); `yaml` of
//! resources, and `json` of one resource, are apply-file documents (`kind:` first, then
//! `api_version:` and the fields), and `json` of a list is an array of them, so `gatewayctl route
//! get x -o yaml|json > f && gatewayctl apply -f f` round-trips, and so does `list`. Tables never carry
//! colour when stdout is not a terminal or `NO_COLOR` is set. Everything goes through [`emit`],
//! which treats a closed pipe (`| head`) as a normal end rather than an error.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::ValueEnum;
use comfy_table::{Attribute, Cell, ContentArrangement, Table, presets};
use gateway_proto::kind::Resource;
use gateway_proto::v1::{Certificate, Config, HealthCheckPolicy, Route, Upstream};
use serde::Serialize;

/// The `api_version` written into, and accepted from, apply-file documents.
pub const API_VERSION: &str = "gateway/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    // Aligned columns for people.
    Table,
    // Like table, with every column.
    Wide,
    // The proto3 JSON mapping, pretty-printed.
    Json,
    // Apply-file documents (`kind:` first), separated by `---`.
    Yaml,
    // One `kind/name` per line, for scripts (`gatewayctl route list -o name | xargs …`).
    Name,
}

/// Something shown as one row of a table.
pub trait Row {
    /// Column headers; `-o table` shows the first [`Row::NARROW`], `-o wide` and `get` show all.
    const HEADERS: &'static [&'static str];
    const NARROW: usize;
    /// One cell per header.
    fn cells(&self) -> Vec<String>;
    /// What `-o name` prints for it, e.g. `dataplane/dp-1`; by default its first cell.
    fn reference(&self) -> String {
        self.cells().into_iter().next().unwrap_or_default()
    }
}

/// An apply-file document: a resource with its `kind` and `api_version` in front.
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    kind: &'static str,
    api_version: &'static str,
    #[serde(flatten)]
    resource: &'a T,
}

fn document<R: Resource + Serialize>(resource: &R) -> Document<'_, R> {
    Document {
        kind: R::KIND.document_kind(),
        api_version: API_VERSION,
        resource,
    }
}

/// Renders a list of resources; `noun` names them when the list is empty (`no routes`).
pub fn resources<R: Resource + Serialize + Row>(
    format: Format,
    items: &[R],
    noun: &str,
) -> anyhow::Result<()> {
    match format {
        Format::Yaml => emit(&yaml_resources(items)?),
        // An array of apply documents: `apply -f` takes it as it takes the YAML stream.
        Format::Json => emit(&json(&items.iter().map(document).collect::<Vec<_>>())?),
        Format::Name => emit(&lines(items.iter().map(|r| resource_ref(r)))),
        _ => rows(format, items, noun),
    }
}

/// `upstream/web`: the name `-o name` prints.
pub fn resource_ref<R: Resource>(item: &R) -> String {
    gateway_proto::kind::resource_ref(R::KIND, item.name())
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.map(|line| format!("{line}\n")).collect()
}

/// Renders one resource: a vertical table, the JSON message, or one apply-file document.
pub fn resource<R: Resource + Serialize + Row>(format: Format, item: &R) -> anyhow::Result<()> {
    match format {
        Format::Yaml => emit(&yaml(&document(item))?),
        Format::Json => emit(&json(&document(item))?),
        Format::Name => emit(&lines(std::iter::once(resource_ref(item)))),
        _ => one(format, item),
    }
}

/// Renders a list of non-resource messages (data planes).
pub fn rows<T: Serialize + Row>(format: Format, items: &[T], noun: &str) -> anyhow::Result<()> {
    match format {
        Format::Json => emit(&json(&items)?),
        Format::Yaml => emit(&yaml_documents(items)?),
        Format::Name => emit(&lines(items.iter().map(Row::reference))),
        Format::Table | Format::Wide if items.is_empty() => {
            eprintln!("no {noun}");
            Ok(())
        }
        Format::Table | Format::Wide => {
            let width = if format == Format::Wide {
                T::HEADERS.len()
            } else {
                T::NARROW
            };
            let mut table = new_table();
            table.set_header(T::HEADERS[..width].iter().map(|h| header_cell(h)));
            for item in items {
                let mut cells = item.cells();
                cells.truncate(width);
                table.add_row(cells);
            }
            emit(&format!("{table}\n"))
        }
    }
}

/// Renders one non-resource message; tables are vertical (`FIELD  value`).
pub fn one<T: Serialize + Row>(format: Format, item: &T) -> anyhow::Result<()> {
    match format {
        Format::Json => emit(&json(item)?),
        Format::Yaml => emit(&yaml(item)?),
        Format::Name => emit(&lines(std::iter::once(item.reference()))),
        Format::Table | Format::Wide => {
            let mut table = new_table();
            for (header, value) in T::HEADERS.iter().zip(item.cells()) {
                table.add_row(vec![header_cell(header), Cell::new(value)]);
            }
            emit(&format!("{table}\n"))
        }
    }
}

/// Renders any message as JSON or YAML; `table` (and `name`, unless the caller has names to
/// print) prints `text` instead.
pub fn message<T: Serialize>(format: Format, item: &T, text: &str) -> anyhow::Result<()> {
    match format {
        Format::Json => emit(&json(item)?),
        Format::Yaml => emit(&yaml(item)?),
        Format::Table | Format::Wide | Format::Name => emit(text),
    }
}

/// `-o name` of a list of `kind/name` references, one per line.
pub fn names(references: &[String]) -> anyhow::Result<()> {
    emit(&lines(references.iter().cloned()))
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    Ok(text)
}

pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    serde_saphyr::to_string(value).context("cannot encode YAML")
}

/// Resources as apply-file documents separated by `---`.
pub fn yaml_resources<R: Resource + Serialize>(items: &[R]) -> anyhow::Result<String> {
    let documents: Vec<_> = items.iter().map(document).collect();
    yaml_documents(&documents)
}

/// A document of any kind, so that one `---`-separated stream can mix them.
#[derive(Serialize)]
#[serde(untagged)]
enum AnyDocument<'a> {
    Certificate(Document<'a, Certificate>),
    HealthCheck(Document<'a, HealthCheckPolicy>),
    Upstream(Document<'a, Upstream>),
    Route(Document<'a, Route>),
}

/// A whole config as apply-file documents: certificates, health checks, upstreams, routes (the
/// order in which each may refer to the ones before it), each kind sorted by name. `export`
/// prints this and `diff` compares it, so equal configs always render identically.
pub fn yaml_config(config: &Config) -> anyhow::Result<String> {
    fn by_name<R: Resource>(items: &[R]) -> Vec<&R> {
        let mut items: Vec<&R> = items.iter().collect();
        items.sort_by(|a, b| a.name().cmp(b.name()));
        items
    }
    let mut documents = Vec::with_capacity(config.resource_count());
    documents.extend(
        by_name(&config.certificates)
            .into_iter()
            .map(|r| AnyDocument::Certificate(document(r))),
    );
    documents.extend(
        by_name(&config.health_checks)
            .into_iter()
            .map(|r| AnyDocument::HealthCheck(document(r))),
    );
    documents.extend(
        by_name(&config.upstreams)
            .into_iter()
            .map(|r| AnyDocument::Upstream(document(r))),
    );
    documents.extend(
        by_name(&config.routes)
            .into_iter()
            .map(|r| AnyDocument::Route(document(r))),
    );
    if documents.is_empty() {
        return Ok(String::new());
    }
    yaml_documents(&documents)
}

fn yaml_documents<T: Serialize>(values: &[T]) -> anyhow::Result<String> {
    serde_saphyr::to_string_multiple(values).context("cannot encode YAML")
}

/// Writes to stdout. A reader that went away (`gatewayctl route list | head -1`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Colour and bold only for a person at a terminal who has not asked for `NO_COLOR`.
pub fn styled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stdout().is_terminal() && !no_color
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    if std::io::stdout().is_terminal() {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        // No width to fit and no escape codes in pipes and files.
        table.force_no_tty();
    }
    table
}

fn header_cell(header: &str) -> Cell {
    let cell = Cell::new(header);
    if styled() {
        cell.add_attribute(Attribute::Bold)
    } else {
        cell
    }
}

/// `a, b, c`, or `-` when empty, for list-valued cells.
pub fn joined<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let text = items
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    or_dash(text)
}

pub fn or_dash(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

/// `k=v, k2=v2` for label maps.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    joined(labels.iter().map(|(k, v)| format!("{k}={v}")))
}
