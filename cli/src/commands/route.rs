//! `gatewayctl route …`: which requests go to which upstream.

use clap::{Args, Subcommand};
use gateway_proto::v1::{
    DeleteRequest, GetRequest, Header, HeaderRewrite, ListRequest, RetryOn, RetryPolicy, Route,
    RouteMatch, route_match,
};

use super::{Client, Context, Crud, Managed, run_crud};
use crate::flags;
use crate::output::{self, Row};

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Create a route
    Create(RouteArgs),
    /// Replace a route with exactly what the flags say
    Replace(RouteArgs),
    /// List routes
    #[command(visible_alias = "ls")]
    List {
        /// Only those with this label, repeatable (all must match)
        #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_parser = flags::key_value)]
        selector: Vec<(String, String)>,
    },
    /// Show one route
    Get { name: String },
    /// Show one route as get does (nothing refers to a route); -o json|yaml|name print
    /// what get prints
    Describe { name: String },
    /// Delete a route
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Name: lowercase letters, digits and '-', 1 to 63 characters
    name: String,
    /// Host to match, exact or `*.example.com`, repeatable [default: any host]
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    #[command(flatten)]
    path: PathMatch,
    /// HTTP method to match, repeatable [default: any method]
    #[arg(long = "method", value_name = "METHOD")]
    methods: Vec<String>,
    /// Higher wins among routes that match the same request
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Name of the upstream that receives the matching requests
    #[arg(long)]
    upstream: String,
    /// Set (replace) a request header sent upstream, repeatable; `host` rewrites the Host header
    #[arg(long = "set-header", value_name = "NAME=VALUE", value_parser = flags::key_value)]
    set_headers: Vec<(String, String)>,
    /// Remove a request header before sending upstream, repeatable
    #[arg(long = "remove-header", value_name = "NAME")]
    remove_headers: Vec<String>,
    /// Total time for the request, retries included, until response headers [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms)]
    timeout: Option<u32>,
    /// Retries after a failed attempt, each to another target when there is one [default: 0]
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// When to retry, repeatable [default: connect-failure and reset]
    #[arg(
        long = "retry-on",
        value_enum,
        value_name = "CONDITION",
        requires = "retries"
    )]
    retry_on: Vec<RetryCondition>,
    /// Time allowed for each attempt [default: no per-try limit]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms, requires = "retries")]
    per_try_timeout: Option<u32>,
    /// Retries in flight may be at most this percentage of the requests in flight, so retries
    /// cannot multiply the load on a failing upstream [default: 20]
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100), requires = "retries")]
    retry_budget: Option<u32>,
    /// Time allowed to open a connection [default: the upstream's]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms)]
    connect_timeout: Option<u32>,
    /// A label, repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flags::key_value)]
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RetryCondition {
    ConnectFailure,
    Reset,
    #[value(name = "502")]
    Status502,
    #[value(name = "503")]
    Status503,
    #[value(name = "504")]
    Status504,
    #[value(name = "5xx")]
    Any5xx,
}

impl From<RetryCondition> for RetryOn {
    fn from(condition: RetryCondition) -> Self {
        match condition {
            RetryCondition::ConnectFailure => RetryOn::ConnectFailure,
            RetryCondition::Reset => RetryOn::Reset,
            RetryCondition::Status502 => RetryOn::Status502,
            RetryCondition::Status503 => RetryOn::Status503,
            RetryCondition::Status504 => RetryOn::Status504,
            RetryCondition::Any5xx => RetryOn::Any5xx,
        }
    }
}

/// Exactly one way of matching the path.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PathMatch {
    /// Match paths that start with this prefix
    #[arg(long, value_name = "PREFIX")]
    path_prefix: Option<String>,
    /// Match exactly this path
    #[arg(long, value_name = "PATH")]
    path_exact: Option<String>,
}

impl From<RouteArgs> for Route {
    fn from(args: RouteArgs) -> Self {
        let path = match (args.path.path_prefix, args.path.path_exact) {
            (Some(prefix), _) => Some(route_match::Path::Prefix(prefix)),
            (None, Some(exact)) => Some(route_match::Path::Exact(exact)),
            (None, None) => None,
        };
        let request_headers = (!args.set_headers.is_empty() || !args.remove_headers.is_empty())
            .then(|| HeaderRewrite {
                set: args
                    .set_headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                remove: args.remove_headers,
            });
        Route {
            name: args.name,
            labels: args.labels.into_iter().collect(),
            r#match: Some(RouteMatch {
                hosts: args.hosts,
                path,
                methods: args
                    .methods
                    .into_iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
            }),
            priority: args.priority,
            upstream: args.upstream,
            request_headers,
            timeout_ms: args.timeout.unwrap_or(0),
            retry: args.retries.map(|attempts| RetryPolicy {
                attempts,
                on: args
                    .retry_on
                    .into_iter()
                    .map(|c| RetryOn::from(c) as i32)
                    .collect(),
                per_try_timeout_ms: args.per_try_timeout.unwrap_or(0),
                budget_percent: args.retry_budget.unwrap_or(0),
            }),
            connect_timeout_ms: args.connect_timeout.unwrap_or(0),
        }
    }
}

pub async fn run(ctx: &Context, command: RouteCommand) -> anyhow::Result<()> {
    let verb = match command {
        RouteCommand::Create(args) => Crud::Create(args),
        RouteCommand::Replace(args) => Crud::Replace(args),
        RouteCommand::List { selector } => Crud::List(selector.into_iter().collect()),
        RouteCommand::Get { name } => Crud::Get(name),
        RouteCommand::Describe { name } => Crud::Describe(name),
        RouteCommand::Delete { name } => Crud::Delete(name),
    };
    run_crud(ctx, verb, Route::from).await
}

impl Managed for Route {
    const PLURAL: &'static str = "routes";

    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.create_route(item).await?.into_inner())
    }
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.replace_route(item).await?.into_inner())
    }
    async fn list_page(
        client: &mut Client,
        request: ListRequest,
    ) -> Result<(Vec<Self>, String), tonic::Status> {
        let page = client.list_routes(request).await?.into_inner();
        Ok((page.items, page.next_page_token))
    }
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status> {
        Ok(client.get_route(GetRequest { name }).await?.into_inner())
    }
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status> {
        let response = client
            .delete_route(DeleteRequest {
                name,
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().version)
    }
}

impl Row for Route {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "HOSTS",
        "PATH",
        "METHODS",
        "PRIORITY",
        "UPSTREAM",
        "TIMEOUT",
        "SET HEADERS",
        "REMOVE HEADERS",
        "LABELS",
    ];
    const NARROW: usize = 6;

    fn cells(&self) -> Vec<String> {
        let matching = self.r#match.clone().unwrap_or_default();
        let path = match &matching.path {
            Some(route_match::Path::Prefix(prefix)) => format!("{prefix} (prefix)"),
            Some(route_match::Path::Exact(exact)) => format!("{exact} (exact)"),
            None => "-".into(),
        };
        let headers = self.request_headers.clone().unwrap_or_default();
        vec![
            self.name.clone(),
            if matching.hosts.is_empty() {
                "*".into()
            } else {
                output::joined(&matching.hosts)
            },
            path,
            if matching.methods.is_empty() {
                "*".into()
            } else {
                output::joined(&matching.methods)
            },
            self.priority.to_string(),
            self.upstream.clone(),
            flags::format_ms(self.timeout_ms),
            output::joined(
                headers
                    .set
                    .iter()
                    .map(|h| format!("{}={}", h.name, h.value)),
            ),
            output::joined(&headers.remove),
            output::labels(&self.labels),
        ]
    }
}
