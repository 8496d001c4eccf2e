//! `gatewayctl export`: the whole current config as apply-file documents.
//!
//! Invariant: the config comes from one version (`GetStatus` names it, `GetVersion` returns it),
//! never from three separate lists that a concurrent write could fall between; and the output,
//! applied to an empty control plane, reproduces that config exactly.

use gateway_proto::v1::{Config, GetStatusRequest, GetVersionRequest};

use super::{Client, Context};
use crate::output::{self, Format};

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let version = current_version(ctx, &mut client).await?;
    let config = config_at(ctx, &mut client, version).await?;
    if ctx.format == Format::Json {
        return output::emit(&output::json(&config)?);
    }
    if version == 0 {
        eprintln!("nothing to export: no config has been written yet");
        return Ok(());
    }
    let mut text = format!("# gatewayctl export of config version {version}\n");
    text.push_str(&output::yaml_config(&config)?);
    output::emit(&text)
}

/// The version the control plane currently serves; 0 before the first write.
pub async fn current_version(ctx: &Context, client: &mut Client) -> anyhow::Result<u64> {
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner();
    Ok(status.version)
}

/// The whole config of `version`, its lists sorted by name; version 0 is the empty config that
/// precedes the first write.
pub async fn config_at(ctx: &Context, client: &mut Client, version: u64) -> anyhow::Result<Config> {
    if version == 0 {
        return Ok(Config::default());
    }
    let mut config = client
        .get_version(GetVersionRequest { version })
        .await
        .map_err(|s| ctx.rpc_error(s))?
        .into_inner()
        .config
        .unwrap_or_default();
    config.canonicalize();
    Ok(config)
}
