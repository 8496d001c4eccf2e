//! `gatewayctl upstream …`: groups of targets that routes send traffic to.

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

use anyhow::Context as _;
use gateway_proto::v1::{
    AllUnhealthyPolicy, DeleteRequest, GetRequest, HashOn, ListRequest, LoadBalancingPolicy,
    ObservedTargetHealth, OutlierDetection, Target, Upstream, UpstreamProtocol, UpstreamTls,
};

use super::{Client, Context, Crud, Managed, run_crud};
use crate::flags;
use crate::output::{self, Row};

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Create an upstream
    Create(UpstreamArgs),
    /// Replace an upstream with exactly what the flags say
    Replace(UpstreamArgs),
    /// List upstreams
    #[command(visible_alias = "ls")]
    List {
        /// Only those with this label, repeatable (all must match)
        #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_parser = flags::key_value)]
        selector: Vec<(String, String)>,
    },
    /// Show one upstream
    Get { name: String },
    /// Show one upstream and what refers to it (the routes that send traffic to it); -o json|yaml|name print what
    /// get prints
    Describe { name: String },
    /// Delete an upstream (refused while a route uses it)
    #[command(visible_alias = "rm")]
    Delete { name: String },
    /// Each target's health as seen by each connected data plane, with the reason and since when
    Health { name: String },
}

#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Name: lowercase letters, digits and '-', 1 to 63 characters
    name: String,
    /// A target, repeatable; the weight (1 to 10000) defaults to 1
    #[arg(long = "target", value_name = "HOST:PORT[=WEIGHT]", required = true, value_parser = flags::target)]
    targets: Vec<Target>,
    /// Load-balancing policy
    #[arg(long, value_enum, default_value_t = LoadBalancing::RoundRobin)]
    lb: LoadBalancing,
    /// What ring-hash and maglev hash: header:NAME, cookie:NAME, client-ip or path
    #[arg(long, value_name = "KEY", value_parser = flags::hash_on)]
    hash_on: Option<HashOn>,
    /// Eject a target after this many consecutive 5xx responses (passive health checking)
    #[arg(long, value_name = "N")]
    eject_after_5xx: Option<u32>,
    /// Eject a target after this many consecutive connection failures
    #[arg(long, value_name = "N")]
    eject_after_connect_failures: Option<u32>,
    /// How long a first ejection lasts; repeated ejections last longer
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = flags::duration_ms)]
    ejection_time: u32,
    /// Longest an ejection may last, however often the target is ejected [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms)]
    max_ejection_time: Option<u32>,
    /// At most this percentage of the targets is ejected at once [default: 50]
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    max_ejected_percent: Option<u32>,
    /// When every target is unhealthy: fail fast with 503, or panic and use them all
    #[arg(long, value_enum, default_value_t = AllUnhealthy::FailFast)]
    all_unhealthy: AllUnhealthy,
    /// Name of the health-check policy that actively checks the targets
    #[arg(long, value_name = "POLICY")]
    health_check: Option<String>,
    /// Time allowed to open a connection to a target [default: the control plane's, 5s]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms)]
    connect_timeout: Option<u32>,
    /// HTTP version spoken to targets: http1, http2 (h2 over TLS, h2c without), or auto (ALPN
    /// over TLS; HTTP/1.1 without, except gRPC calls)
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    protocol: Protocol,
    /// Speak TLS to targets, verified against the public web roots or --ca-file
    #[arg(long)]
    tls: bool,
    /// Server name to send and verify [default: the target's host]
    #[arg(long, value_name = "NAME", requires = "tls")]
    sni: Option<String>,
    /// PEM file of the CA certificates that verify targets
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca_file: Option<PathBuf>,
    /// Name of a certificate (gatewayctl certificate create) to present to targets (mTLS)
    #[arg(long, value_name = "CERTIFICATE", requires = "tls")]
    client_certificate: Option<String>,
    /// A label, repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flags::key_value)]
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Http1,
    Http2,
    Auto,
}

impl From<Protocol> for UpstreamProtocol {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Http1 => UpstreamProtocol::Http1,
            Protocol::Http2 => UpstreamProtocol::Http2,
            Protocol::Auto => UpstreamProtocol::Auto,
        }
    }
}

/// The `--protocol` name of a stored protocol.
fn protocol_name(protocol: i32) -> String {
    match UpstreamProtocol::try_from(protocol) {
        Ok(UpstreamProtocol::Unspecified | UpstreamProtocol::Http1) => "http1",
        Ok(UpstreamProtocol::Http2) => "http2",
        Ok(UpstreamProtocol::Auto) => "auto",
        Err(_) => return format!("unknown ({protocol})"),
    }
    .to_owned()
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LoadBalancing {
    /// Smooth weighted round robin
    RoundRobin,
    /// Weighted random
    Random,
    /// Power of two random choices, preferring fewer requests in flight
    LeastRequest,
    /// Consistent hashing on --hash-on (ketama ring)
    RingHash,
    /// Consistent hashing on --hash-on (maglev table)
    Maglev,
}

impl From<LoadBalancing> for LoadBalancingPolicy {
    fn from(lb: LoadBalancing) -> Self {
        match lb {
            LoadBalancing::RoundRobin => LoadBalancingPolicy::RoundRobin,
            LoadBalancing::Random => LoadBalancingPolicy::Random,
            LoadBalancing::LeastRequest => LoadBalancingPolicy::LeastRequest,
            LoadBalancing::RingHash => LoadBalancingPolicy::RingHash,
            LoadBalancing::Maglev => LoadBalancingPolicy::Maglev,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AllUnhealthy {
    /// Answer 503 with Retry-After
    FailFast,
    /// Ignore health and use every target
    Panic,
}

impl From<AllUnhealthy> for AllUnhealthyPolicy {
    fn from(policy: AllUnhealthy) -> Self {
        match policy {
            AllUnhealthy::FailFast => AllUnhealthyPolicy::FailFast,
            AllUnhealthy::Panic => AllUnhealthyPolicy::Panic,
        }
    }
}

/// The `--lb` name of a stored policy.
pub fn lb_name(policy: i32) -> String {
    match LoadBalancingPolicy::try_from(policy) {
        Ok(LoadBalancingPolicy::Unspecified | LoadBalancingPolicy::RoundRobin) => "round-robin",
        Ok(LoadBalancingPolicy::Random) => "random",
        Ok(LoadBalancingPolicy::LeastRequest) => "least-request",
        Ok(LoadBalancingPolicy::RingHash) => "ring-hash",
        Ok(LoadBalancingPolicy::Maglev) => "maglev",
        Err(_) => return format!("unknown ({policy})"),
    }
    .to_owned()
}

impl UpstreamArgs {
    /// The resource the flags describe; reads --ca-file.
    fn into_upstream(self) -> anyhow::Result<Upstream> {
        let ca_pem = match &self.ca_file {
            None => String::new(),
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("--ca-file {}", path.display()))?,
        };
        let tls = self.tls.then(|| UpstreamTls {
            enabled: true,
            sni: self.sni.clone().unwrap_or_default(),
            ca_pem,
            client_certificate: self.client_certificate.clone().unwrap_or_default(),
        });
        let protocol = UpstreamProtocol::from(self.protocol) as i32;
        Ok(Upstream {
            protocol,
            tls,
            ..Upstream::from(self)
        })
    }
}

impl From<UpstreamArgs> for Upstream {
    fn from(args: UpstreamArgs) -> Self {
        Upstream {
            protocol: 0,
            tls: None,
            name: args.name,
            labels: args.labels.into_iter().collect(),
            targets: args.targets,
            load_balancing: LoadBalancingPolicy::from(args.lb) as i32,
            health_check: args.health_check.unwrap_or_default(),
            connect_timeout_ms: args.connect_timeout.unwrap_or(0),
            hash_on: args.hash_on,
            outlier_detection: (args.eject_after_5xx.is_some()
                || args.eject_after_connect_failures.is_some())
            .then(|| OutlierDetection {
                consecutive_5xx: args.eject_after_5xx.unwrap_or(0),
                consecutive_connect_failures: args.eject_after_connect_failures.unwrap_or(0),
                base_ejection_ms: args.ejection_time,
                max_ejection_ms: args.max_ejection_time.unwrap_or(0),
                max_ejected_percent: args.max_ejected_percent.unwrap_or(0),
            }),
            all_unhealthy: AllUnhealthyPolicy::from(args.all_unhealthy) as i32,
        }
    }
}

pub async fn run(ctx: &Context, command: UpstreamCommand) -> anyhow::Result<()> {
    let verb = match command {
        UpstreamCommand::Create(args) => Crud::Create(args.into_upstream()?),
        UpstreamCommand::Replace(args) => Crud::Replace(args.into_upstream()?),
        UpstreamCommand::List { selector } => Crud::List(selector.into_iter().collect()),
        UpstreamCommand::Get { name } => Crud::Get(name),
        UpstreamCommand::Describe { name } => Crud::Describe(name),
        UpstreamCommand::Delete { name } => Crud::Delete(name),
        UpstreamCommand::Health { name } => return health(ctx, name).await,
    };
    run_crud(ctx, verb, |upstream| upstream).await
}

async fn health(ctx: &Context, name: String) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let health = client
        .get_upstream_health(GetRequest { name })
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    output::rows(
        ctx.format,
        &health.targets,
        "health reports (no connected data plane checks this upstream's targets yet)",
    )
}

impl Row for ObservedTargetHealth {
    const HEADERS: &'static [&'static str] = &["TARGET", "DATA PLANE", "STATE", "REASON", "SINCE"];
    const NARROW: usize = 5;

    fn cells(&self) -> Vec<String> {
        let health = self.health.clone().unwrap_or_default();
        let state = match (health.healthy, health.ejected) {
            (_, true) => "ejected",
            (true, false) => "healthy",
            (false, false) => "unhealthy",
        };
        vec![
            health.address,
            self.node_id.clone(),
            state.to_owned(),
            output::or_dash(health.reason),
            output::or_dash(health.since),
        ]
    }
}

impl Managed for Upstream {
    const PLURAL: &'static str = "upstreams";

    fn used_by(config: &gateway_proto::v1::Config, name: &str) -> Vec<String> {
        super::references(
            gateway_proto::kind::Kind::Route,
            config.routes_using_upstream(name),
        )
    }

    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.create_upstream(item).await?.into_inner())
    }
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.replace_upstream(item).await?.into_inner())
    }
    async fn list_page(
        client: &mut Client,
        request: ListRequest,
    ) -> Result<(Vec<Self>, String), tonic::Status> {
        let page = client.list_upstreams(request).await?.into_inner();
        Ok((page.items, page.next_page_token))
    }
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status> {
        Ok(client.get_upstream(GetRequest { name }).await?.into_inner())
    }
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status> {
        let response = client
            .delete_upstream(DeleteRequest {
                name,
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().version)
    }
}

impl Row for Upstream {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "TARGETS",
        "LB",
        "HEALTH CHECK",
        "CONNECT TIMEOUT",
        "PROTOCOL",
        "LABELS",
    ];
    const NARROW: usize = 4;

    fn cells(&self) -> Vec<String> {
        let lb = lb_name(self.load_balancing);
        vec![
            self.name.clone(),
            output::joined(
                self.targets
                    .iter()
                    .map(|t| format!("{}={}", t.address, t.weight.max(1))),
            ),
            lb,
            output::or_dash(self.health_check.clone()),
            flags::format_ms(self.connect_timeout_ms),
            format!(
                "{}{}",
                protocol_name(self.protocol),
                if self.tls.as_ref().is_some_and(|t| t.enabled) {
                    "+tls"
                } else {
                    ""
                }
            ),
            output::labels(&self.labels),
        ]
    }
}
