//! `gatewayctl`: the command line of the gateway's control plane.
//!
//! Every command is a few gRPC calls to `gateway.v1.AdminService` (`apply --wait` then polls).
//! Local work (flag parsing, reading apply files) happens before connecting, so bad input is
//! reported without a server.
//! Exit codes: 0 success, 1 any failure (`error: …` on stderr), 2 usage errors (clap's).
//! `diff` alone follows `diff(1)`: 0 no difference, 1 differences, 2 any error.

mod commands;
mod flags;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::Context;
use commands::apply::ApplyArgs;
use commands::audit::AuditArgs;
use commands::dataplane::DataPlaneCommand;
use commands::diff::DiffArgs;
use commands::healthcheck::HealthCheckCommand;
use commands::history::{HistoryArgs, RollbackArgs};
use commands::route::RouteCommand;
use commands::token::TokenCommand;
use commands::upstream::UpstreamCommand;
use output::Format;

/// Manage the API gateway: upstreams, routes, health checks, and the data planes that serve them.
#[derive(Debug, Parser)]
#[command(name = "gatewayctl", version, propagate_version = true)]
struct Cli {
    /// Control plane's gRPC address
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_SERVER",
        default_value = "http://127.0.0.1:9090",
        value_parser = flags::server_url
    )]
    server: String,
    /// Bearer token sent with every request
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Output format
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = Format::Table
    )]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Groups of targets that routes send traffic to
    Upstream {
        #[command(subcommand)]
        command: UpstreamCommand,
    },
    /// Which requests go to which upstream
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Active health-check policies that upstreams refer to
    #[command(alias = "health-check")]
    Healthcheck {
        #[command(subcommand)]
        command: HealthCheckCommand,
    },
    /// Data planes and the config version each applied or rejected
    Dataplane {
        #[command(subcommand)]
        command: DataPlaneCommand,
    },
    /// The current config version and which data planes are behind or rejected it
    Status,
    /// Create or replace every resource in YAML files, in one transaction
    #[command(after_help = "\
With --wait, progress goes to standard error and the exit status is 0 once every connected
data plane has applied the version (or there are none), 1 if a data plane rejected it (its
errors are printed) or some are still behind at --timeout.")]
    Apply(ApplyArgs),
    /// Show what changed between two config versions, or what applying files would change
    #[command(after_help = "\
Both sides are rendered as `gatewayctl export` prints them and compared as a unified diff,
coloured only on a terminal without NO_COLOR; -o does not apply.

Examples:
  gatewayctl diff --from 41 --to 42     what version 42 changed
  gatewayctl diff --from 41             from version 41 to the current version
  gatewayctl diff -f gateway.yaml       what `apply -f gateway.yaml` would change

Exit status: 0 no difference, 1 differences, 2 error.")]
    Diff(DiffArgs),
    /// Print the whole current config as YAML documents that `apply -f` reproduces
    #[command(after_help = "\
Documents come health checks first, then upstreams, then routes, each sorted by name, all from
one config version (named in a leading comment). -o json prints one gateway.v1.Config instead.")]
    Export,
    /// List config versions, newest first, with what each changed
    #[command(after_help = "\
Changes read +created ~updated -deleted, e.g. `+route/a ~upstream/web -route/b`. -o wide adds
each version's content hash; -o json and -o yaml print every change of every version.")]
    History(HistoryArgs),
    /// Who changed what and when, newest first
    #[command(after_help = "\
Every config write and token change has one entry: time, actor (the token's name, `bootstrap`
or `anonymous`), operation (CreateRoute, Apply, Rollback, RevokeToken, …), the config version it
produced (`-` for token changes) and what it changed (+created ~updated -deleted).")]
    Audit(AuditArgs),
    /// API tokens and their roles (admin only)
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Make an earlier version's content current again, as a new version
    #[command(after_help = "\
History is kept: the rollback is a new version, which can itself be rolled back. Resources the
rollback deletes are counted as updated. Rolling back to the content already current changes
nothing and says so.")]
    Rollback(RollbackArgs),
    /// Live traffic per route and upstream: requests/s, error rate, p99 (Ctrl-C to stop)
    Top(commands::top::TopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let ctx = Context::new(cli.server, cli.token, cli.output);
    if let Command::Diff(args) = cli.command {
        // diff's own exit status: 0 same, 1 different, 2 error.
        return commands::diff::exit_code(&runtime.block_on(commands::diff::run(&ctx, args)));
    }
    match runtime.block_on(run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Upstream { command } => commands::upstream::run(ctx, command).await,
        Command::Route { command } => commands::route::run(ctx, command).await,
        Command::Healthcheck { command } => commands::healthcheck::run(ctx, command).await,
        Command::Dataplane { command } => commands::dataplane::run(ctx, command).await,
        Command::Status => commands::status::run(ctx).await,
        Command::Apply(args) => commands::apply::run(ctx, args).await,
        Command::Diff(args) => commands::diff::run(ctx, args).await.map(|_| ()),
        Command::Export => commands::export::run(ctx).await,
        Command::History(args) => commands::history::history(ctx, args).await,
        Command::Rollback(args) => commands::history::rollback(ctx, args).await,
        Command::Token { command } => commands::token::run(ctx, command).await,
        Command::Audit(args) => commands::audit::run(ctx, args).await,
        Command::Top(args) => commands::top::run(ctx, args).await,
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn contract_examples_parse() {
        for line in [
            "gatewayctl upstream create web --target 10.0.0.1:8080=3 --target 10.0.0.2:8080 --lb round-robin --health-check hc",
            "gatewayctl healthcheck create hc --http-path /healthz --interval 2s --timeout 1s --healthy-threshold 2 --unhealthy-threshold 3",
            "gatewayctl route create api --host api.example.com --path-prefix /v1 --method GET --priority 10 --upstream web --timeout 5s",
            "gatewayctl route list -o json",
            "gatewayctl upstream get web -o yaml",
            "gatewayctl healthcheck delete hc",
            "gatewayctl dataplane list -o wide",
            "gatewayctl dataplane get dp-1",
            "gatewayctl status",
            "gatewayctl apply -f gateway.yaml",
            "gatewayctl apply -f gateway.yaml --wait",
            "gatewayctl apply -f gateway.yaml --wait --timeout 60s",
            "gatewayctl diff -f gateway.yaml",
            "gatewayctl diff --from 3 --to 5",
            "gatewayctl diff --from 3",
            "gatewayctl export",
            "gatewayctl export -o json",
            "gatewayctl history",
            "gatewayctl history --limit 5 -o yaml",
            "gatewayctl rollback --to 42",
            "gatewayctl token create ci --role admin",
            "gatewayctl token create grafana --role viewer -o json",
            "gatewayctl token list",
            "gatewayctl token revoke ci",
            "gatewayctl audit",
            "gatewayctl audit --limit 5 --actor ci -o yaml",
            "gatewayctl -o yaml --server http://cp:9090 route get api",
        ] {
            let args = line.split_whitespace();
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn route_needs_exactly_one_path_match() {
        let both = "gatewayctl route create api --path-prefix /a --path-exact /b --upstream web";
        let none = "gatewayctl route create api --upstream web";
        for line in [both, none] {
            let err = Cli::try_parse_from(line.split_whitespace()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for line in [
            "gatewayctl upstream create web --target 10.0.0.1",
            "gatewayctl upstream create web --target 10.0.0.1:80 --connect-timeout fast",
            "gatewayctl upstream create web --target 10.0.0.1:80 --lb magic",
            "gatewayctl healthcheck create hc --http-path / --expected-status 2xx",
            "gatewayctl route create api --path-prefix / --upstream web --set-header novalue",
            "gatewayctl --server ftp://x status",
            "gatewayctl diff",
            "gatewayctl diff --to 3",
            "gatewayctl diff --from 1 -f gateway.yaml",
            "gatewayctl diff --from x",
            "gatewayctl rollback",
            "gatewayctl rollback --to 0",
            "gatewayctl history --limit -1",
            "gatewayctl apply -f gateway.yaml --timeout 5s",
            "gatewayctl apply -f gateway.yaml --wait --timeout soon",
        ] {
            let err = Cli::try_parse_from(line.split_whitespace()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn healthcheck_defaults() {
        let cli = Cli::try_parse_from(
            "gatewayctl healthcheck create hc --http-path /healthz".split_whitespace(),
        )
        .unwrap();
        let Command::Healthcheck {
            command: HealthCheckCommand::Create(args),
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        let policy = gateway_proto::v1::HealthCheckPolicy::from(args);
        assert_eq!(
            (
                policy.interval_ms,
                policy.timeout_ms,
                policy.healthy_threshold,
                policy.unhealthy_threshold
            ),
            (5000, 1000, 2, 3)
        );
        assert!(matches!(
            policy.check,
            Some(gateway_proto::v1::health_check_policy::Check::Http(_))
        ));
    }
}
