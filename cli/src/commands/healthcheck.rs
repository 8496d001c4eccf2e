//! `gatewayctl healthcheck …`: active health checks (HTTP, TCP or gRPC) that upstreams refer to
//! by name.

use clap::{Args, Subcommand};
use gateway_proto::v1::health_check_policy::Check;
use gateway_proto::v1::{
    DeleteRequest, GetRequest, GrpcHealthCheck, HealthCheckPolicy, HttpHealthCheck, ListRequest,
    StatusRange, TcpHealthCheck,
};

use super::{Client, Context, Crud, Managed, run_crud};
use crate::flags;
use crate::output::{self, Row};

#[derive(Debug, Subcommand)]
pub enum HealthCheckCommand {
    /// Create a health-check policy
    Create(HealthCheckArgs),
    /// Replace a health-check policy with exactly what the flags say
    Replace(HealthCheckArgs),
    /// List health-check policies
    #[command(visible_alias = "ls")]
    List {
        /// Only those with this label, repeatable (all must match)
        #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_parser = flags::key_value)]
        selector: Vec<(String, String)>,
    },
    /// Show one health-check policy
    Get { name: String },
    /// Show one health-check policy and what refers to it (the upstreams it checks); -o json|yaml|name print what
    /// get prints
    Describe { name: String },
    /// Delete a health-check policy (refused while an upstream uses it)
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("kind").required(true).args(["http_path", "tcp", "grpc"]))]
pub struct HealthCheckArgs {
    /// Name: lowercase letters, digits and '-', 1 to 63 characters
    name: String,
    /// HTTP check: the path requested on each target
    #[arg(long, value_name = "PATH")]
    http_path: Option<String>,
    /// HTTP check: request method [default: GET]
    #[arg(long, value_name = "METHOD", requires = "http_path")]
    http_method: Option<String>,
    /// HTTP check: Host header [default: the target's address]
    #[arg(long, value_name = "HOST", requires = "http_path")]
    http_host: Option<String>,
    /// TCP check: healthy when a connection opens
    #[arg(long)]
    tcp: bool,
    /// gRPC check (grpc.health.v1): healthy when the server answers SERVING
    #[arg(long)]
    grpc: bool,
    /// gRPC check: the service asked about [default: the whole server]
    #[arg(long, value_name = "SERVICE", requires = "grpc")]
    grpc_service: Option<String>,
    /// Time between two checks of a target
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = flags::duration_ms)]
    interval: u32,
    /// Time allowed for a check's response
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = flags::duration_ms)]
    timeout: u32,
    /// Consecutive successes that mark a target healthy
    #[arg(long, value_name = "N", default_value_t = 2)]
    healthy_threshold: u32,
    /// Consecutive failures that mark a target unhealthy
    #[arg(long, value_name = "N", default_value_t = 3)]
    unhealthy_threshold: u32,
    /// Percent of the interval added at random to each wait, so checks spread out [default: 10]
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 0,
        hide_default_value = true
    )]
    jitter: u32,
    /// HTTP check: status code or range that counts as healthy, repeatable [default: 200-399]
    #[arg(long = "expected-status", value_name = "CODE|FROM-TO", value_parser = flags::status_range, requires = "http_path")]
    expected_statuses: Vec<StatusRange>,
    /// A label, repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flags::key_value)]
    labels: Vec<(String, String)>,
}

impl From<HealthCheckArgs> for HealthCheckPolicy {
    fn from(args: HealthCheckArgs) -> Self {
        HealthCheckPolicy {
            name: args.name,
            labels: args.labels.into_iter().collect(),
            check: Some(match (args.http_path, args.tcp) {
                (Some(path), _) => Check::Http(HttpHealthCheck {
                    path,
                    method: args.http_method.unwrap_or_default(),
                    host: args.http_host.unwrap_or_default(),
                    expected_statuses: args.expected_statuses,
                }),
                (None, true) => Check::Tcp(TcpHealthCheck {}),
                (None, false) => Check::Grpc(GrpcHealthCheck {
                    service: args.grpc_service.unwrap_or_default(),
                }),
            }),
            interval_ms: args.interval,
            timeout_ms: args.timeout,
            healthy_threshold: args.healthy_threshold,
            unhealthy_threshold: args.unhealthy_threshold,
            jitter_percent: args.jitter,
        }
    }
}

pub async fn run(ctx: &Context, command: HealthCheckCommand) -> anyhow::Result<()> {
    let verb = match command {
        HealthCheckCommand::Create(args) => Crud::Create(args),
        HealthCheckCommand::Replace(args) => Crud::Replace(args),
        HealthCheckCommand::List { selector } => Crud::List(selector.into_iter().collect()),
        HealthCheckCommand::Get { name } => Crud::Get(name),
        HealthCheckCommand::Describe { name } => Crud::Describe(name),
        HealthCheckCommand::Delete { name } => Crud::Delete(name),
    };
    run_crud(ctx, verb, HealthCheckPolicy::from).await
}

impl Managed for HealthCheckPolicy {
    const PLURAL: &'static str = "health-check policies";

    fn used_by(config: &gateway_proto::v1::Config, name: &str) -> Vec<String> {
        super::references(
            gateway_proto::kind::Kind::Upstream,
            config.upstreams_using_health_check(name),
        )
    }

    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.create_health_check(item).await?.into_inner())
    }
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.replace_health_check(item).await?.into_inner())
    }
    async fn list_page(
        client: &mut Client,
        request: ListRequest,
    ) -> Result<(Vec<Self>, String), tonic::Status> {
        let page = client.list_health_checks(request).await?.into_inner();
        Ok((page.items, page.next_page_token))
    }
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status> {
        Ok(client
            .get_health_check(GetRequest { name })
            .await?
            .into_inner())
    }
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status> {
        let response = client
            .delete_health_check(DeleteRequest {
                name,
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().version)
    }
}

impl Row for HealthCheckPolicy {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "CHECK",
        "INTERVAL",
        "TIMEOUT",
        "HEALTHY",
        "UNHEALTHY",
        "EXPECTED STATUS",
        "LABELS",
    ];
    const NARROW: usize = 7;

    fn cells(&self) -> Vec<String> {
        let (check, http) = match &self.check {
            Some(Check::Http(http)) => (format!("http {}", http.path), http.clone()),
            Some(Check::Tcp(_)) => ("tcp".to_owned(), HttpHealthCheck::default()),
            Some(Check::Grpc(grpc)) => (
                format!("grpc {}", output::or_dash(grpc.service.clone())),
                HttpHealthCheck::default(),
            ),
            None => ("-".to_owned(), HttpHealthCheck::default()),
        };
        let expected = if !matches!(self.check, Some(Check::Http(_))) {
            "-".to_owned()
        } else if http.expected_statuses.is_empty() {
            "200-399".to_owned()
        } else {
            output::joined(http.expected_statuses.iter().map(|r| {
                if r.from == r.to {
                    r.from.to_string()
                } else {
                    format!("{}-{}", r.from, r.to)
                }
            }))
        };
        vec![
            self.name.clone(),
            check,
            flags::format_ms(self.interval_ms),
            flags::format_ms(self.timeout_ms),
            self.healthy_threshold.to_string(),
            self.unhealthy_threshold.to_string(),
            expected,
            output::labels(&self.labels),
        ]
    }
}
