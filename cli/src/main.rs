//! `gatewayctl`: the command line of the gateway's control plane.
//!
//! Every command is a few gRPC calls to `gateway.v1.AdminService` (`apply --wait` then polls).
//! Local work (flag parsing, reading apply files) happens before connecting, so bad input is
//! reported without a server.
//! Exit codes: 0 success, 1 any failure (`error: …` on stderr), 2 usage errors (clap's).
//! `diff` alone follows `diff(1)`: 0 no difference, 1 differences, 2 any error.

mod commands;
mod contexts;
mod flags;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::Shell;

use commands::Context;
use commands::apply::ApplyArgs;
use commands::audit::AuditArgs;
use commands::certificate::CertificateCommand;
use commands::config::ConfigCommand;
use commands::dataplane::DataPlaneCommand;
use commands::diff::DiffArgs;
use commands::healthcheck::HealthCheckCommand;
use commands::history::{HistoryArgs, RollbackArgs};
use commands::route::RouteCommand;
use commands::token::TokenCommand;
use commands::upstream::UpstreamCommand;
use commands::version::VersionArgs;
use contexts::{ContextFile, Overrides, Source};
use output::Format;

/// Manage the API gateway: upstreams, routes, health checks, and the data planes that serve them.
#[derive(Debug, Parser)]
#[command(
    name = "gatewayctl",
    version,
    propagate_version = true,
    after_help = "\
Where to connect and with which token: a flag, else its GATEWAYCTL_* variable, else the context
(--context, else the current context of $XDG_CONFIG_HOME/gatewayctl/config.yaml; see
`gatewayctl config`), else http://127.0.0.1:9090 without a token."
)]
struct Cli {
    /// Control plane's gRPC address [default: the context's, else http://127.0.0.1:9090]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_SERVER",
        value_parser = flags::server_url
    )]
    server: Option<String>,
    /// Bearer token sent with every request (a file or a context keeps it off the command line)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// File holding the bearer token
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_TOKEN_FILE",
        value_name = "PATH"
    )]
    token_file: Option<PathBuf>,
    /// Context of the config file to use [default: its current context]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GATEWAYCTL_CONTEXT",
        value_name = "NAME"
    )]
    context: Option<String>,
    /// Output format
    #[arg(
        short,
        long,
        global = true,
        env = "GATEWAYCTL_OUTPUT",
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
    /// TLS certificates served by SNI (private keys are write-only)
    #[command(alias = "cert")]
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
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
    /// Contexts: named control planes and their tokens, in the config file
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  gatewayctl completion bash > ~/.local/share/bash-completion/completions/gatewayctl
  gatewayctl completion zsh > \"${fpath[1]}/_gatewayctl\"
  gatewayctl completion fish > ~/.config/fish/completions/gatewayctl.fish")]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the client's and the control plane's versions
    Version(VersionArgs),
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

/// Help and `--version` print as clap renders them; a usage error is one line on stderr (every
/// error is), with clap's hints folded in, and exit 2.
fn usage_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    let rendered = error.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line} (see --help)");
    std::process::exit(error.exit_code());
}

fn main() -> ExitCode {
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| usage_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| usage_error(e));
    let format = cli.output;
    // Commands that need no control plane, and so no context.
    match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gatewayctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Config { command } => {
            return match commands::config::run(format, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    if let Command::Version(args) = &cli.command
        && args.client_only()
    {
        return match runtime.block_on(commands::version::run(None, format)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let is_diff = matches!(cli.command, Command::Diff(_));
    let ctx = match connection(&cli, &matches) {
        Ok(target) => Context::new(target.server, target.token, format),
        // diff exits 2 on any error.
        Err(e) if is_diff => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
        Err(e) => return fail(&e),
    };
    if let Command::Diff(args) = cli.command {
        // diff's own exit status: 0 same, 1 different, 2 error.
        return commands::diff::exit_code(&runtime.block_on(commands::diff::run(&ctx, args)));
    }
    match runtime.block_on(run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The server and token: flags, then the environment, then the context file.
fn connection(cli: &Cli, matches: &clap::ArgMatches) -> anyhow::Result<contexts::Target> {
    let (file, path) = match ContextFile::path() {
        Ok(path) => (ContextFile::load(&path)?, path),
        // No home: no context file, which is fine unless one is asked for.
        Err(_) => (ContextFile::default(), PathBuf::from("config.yaml")),
    };
    contexts::resolve(overrides(cli, matches), &file, &path)
}

/// What the command line and the environment say, each token setting with where it came from.
fn overrides(cli: &Cli, matches: &clap::ArgMatches) -> Overrides {
    let source = |id: &str| match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Source::Flag,
        _ => Source::Environment,
    };
    Overrides {
        server: cli.server.clone(),
        token: cli.token.clone().map(|t| (t, source("token"))),
        token_file: cli.token_file.clone().map(|p| (p, source("token_file"))),
        context: cli.context.clone(),
    }
}

async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Upstream { command } => commands::upstream::run(ctx, command).await,
        Command::Route { command } => commands::route::run(ctx, command).await,
        Command::Healthcheck { command } => commands::healthcheck::run(ctx, command).await,
        Command::Certificate { command } => commands::certificate::run(ctx, command).await,
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
        Command::Version(_) => commands::version::run(Some(ctx), ctx.format).await,
        // Handled before connecting.
        Command::Config { .. } | Command::Completion { .. } => Ok(()),
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
            "gatewayctl route list -o name",
            "gatewayctl upstream list -l team=web -l env=prod",
            "gatewayctl apply -f gateway.yaml --dry-run",
            "gatewayctl apply -f gateway.yaml --prune --selector team=web",
            "gatewayctl apply -f gateway.yaml --prune --dry-run",
            "gatewayctl config get-contexts",
            "gatewayctl config use-context prod",
            "gatewayctl config set-context prod --server http://cp:9090 --token-file /run/token --use",
            "gatewayctl config current-context",
            "gatewayctl config delete-context old",
            "gatewayctl completion bash",
            "gatewayctl completion zsh",
            "gatewayctl completion fish",
            "gatewayctl version",
            "gatewayctl version --client -o json",
            "gatewayctl --context prod --token-file /run/token status",
            "gatewayctl -o yaml --server http://cp:9090 route get api",
        ] {
            let args = line.split_whitespace();
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn flags_are_told_apart_from_the_environment() {
        let matches = Cli::command()
            .try_get_matches_from(["gatewayctl", "--token-file", "/run/token", "status"])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let overrides = overrides(&cli, &matches);
        assert_eq!(
            overrides.token_file,
            Some((PathBuf::from("/run/token"), Source::Flag))
        );
    }

    #[test]
    fn completion_scripts_are_generated() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gatewayctl", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("use-context"), "{shell}");
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
            "gatewayctl apply -f gateway.yaml --selector team=web",
            "gatewayctl apply -f gateway.yaml --dry-run --wait",
            "gatewayctl completion powershell-ish",
            "gatewayctl config set-context prod --token-file a --token-stdin",
            "gatewayctl route list -l novalue",
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
