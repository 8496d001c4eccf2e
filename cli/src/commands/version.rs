//! `gatewayctl version`: this client's version and the control plane's.

use clap::Args;
use gateway_proto::v1::GetServerInfoRequest;
use serde::Serialize;

use super::Context;
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client's version; do not contact the control plane
    #[arg(long)]
    client: bool,
}

#[derive(Debug, Serialize)]
struct Versions {
    client: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<gateway_proto::v1::ServerInfo>,
}

pub const CLIENT: &str = env!("CARGO_PKG_VERSION");

/// With `ctx` (`None` for `--client`), asks the control plane too.
pub async fn run(ctx: Option<&Context>, format: Format) -> anyhow::Result<()> {
    let Some(ctx) = ctx else {
        let versions = Versions {
            client: CLIENT,
            server: None,
        };
        return output::message(format, &versions, &format!("client: {CLIENT}\n"));
    };
    let mut client = ctx.client().await?;
    let info = client
        .get_server_info(GetServerInfoRequest {})
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    let text = format!(
        "client: {CLIENT}\nserver: {} at {} ({} store, config version {})\n",
        info.version, ctx.server, info.store, info.config_version
    );
    let versions = Versions {
        client: CLIENT,
        server: Some(info),
    };
    output::message(format, &versions, &text)
}

impl VersionArgs {
    pub fn client_only(&self) -> bool {
        self.client
    }
}
