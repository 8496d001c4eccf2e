//! `gatewayctl upstream …`: groups of targets that routes send traffic to.

use clap::{Args, Subcommand, ValueEnum};
use gateway_proto::v1::{
    DeleteRequest, GetRequest, ListRequest, LoadBalancingPolicy, Target, Upstream,
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
    List,
    /// Show one upstream
    Get { name: String },
    /// Delete an upstream (refused while a route uses it)
    #[command(visible_alias = "rm")]
    Delete { name: String },
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
    /// Name of the health-check policy that actively checks the targets
    #[arg(long, value_name = "POLICY")]
    health_check: Option<String>,
    /// Time allowed to open a connection to a target [default: the control plane's, 5s]
    #[arg(long, value_name = "DURATION", value_parser = flags::duration_ms)]
    connect_timeout: Option<u32>,
    /// A label, repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flags::key_value)]
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LoadBalancing {
    /// Weighted round robin
    RoundRobin,
}

impl From<LoadBalancing> for LoadBalancingPolicy {
    fn from(lb: LoadBalancing) -> Self {
        match lb {
            LoadBalancing::RoundRobin => LoadBalancingPolicy::RoundRobin,
        }
    }
}

impl From<UpstreamArgs> for Upstream {
    fn from(args: UpstreamArgs) -> Self {
        Upstream {
            name: args.name,
            labels: args.labels.into_iter().collect(),
            targets: args.targets,
            load_balancing: LoadBalancingPolicy::from(args.lb) as i32,
            health_check: args.health_check.unwrap_or_default(),
            connect_timeout_ms: args.connect_timeout.unwrap_or(0),
        }
    }
}

pub async fn run(ctx: &Context, command: UpstreamCommand) -> anyhow::Result<()> {
    let verb = match command {
        UpstreamCommand::Create(args) => Crud::Create(args),
        UpstreamCommand::Replace(args) => Crud::Replace(args),
        UpstreamCommand::List => Crud::List,
        UpstreamCommand::Get { name } => Crud::Get(name),
        UpstreamCommand::Delete { name } => Crud::Delete(name),
    };
    run_crud(ctx, verb, Upstream::from).await
}

impl Managed for Upstream {
    const PLURAL: &'static str = "upstreams";

    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.create_upstream(item).await?.into_inner())
    }
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.replace_upstream(item).await?.into_inner())
    }
    async fn list_all(client: &mut Client) -> Result<Vec<Self>, tonic::Status> {
        Ok(client
            .list_upstreams(ListRequest {})
            .await?
            .into_inner()
            .items)
    }
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status> {
        Ok(client.get_upstream(GetRequest { name }).await?.into_inner())
    }
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status> {
        let response = client.delete_upstream(DeleteRequest { name }).await?;
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
        "LABELS",
    ];
    const NARROW: usize = 4;

    fn cells(&self) -> Vec<String> {
        let lb = match LoadBalancingPolicy::try_from(self.load_balancing) {
            Ok(LoadBalancingPolicy::Unspecified | LoadBalancingPolicy::RoundRobin) => {
                "round-robin".to_owned()
            }
            Err(_) => format!("unknown ({})", self.load_balancing),
        };
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
            output::labels(&self.labels),
        ]
    }
}
