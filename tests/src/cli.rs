//! Runs the real `gatewayctl` against a control plane.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::process::binary_path;

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails the test, showing both streams, unless the command exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "gatewayctl failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Fails the test unless the command failed the way a CLI should: a non-zero exit and a
    /// message on stderr, never a panic.
    pub fn assert_refused(&self) -> &Self {
        assert!(
            !self.success(),
            "gatewayctl should have failed but exited 0:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "gatewayctl failed ({}) without saying why on stderr",
            self.status
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "gatewayctl panicked: {}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("gatewayctl printed invalid JSON ({e}): {}", self.stdout))
    }
}

/// Runs `gatewayctl --server <server> <args>`, with a clean environment for its own settings.
pub async fn gatewayctl(server: &str, args: &[&str]) -> CliOutput {
    run(server, args, None).await
}

/// Like [`gatewayctl`], with `input` on its standard input (for `-f -`).
pub async fn gatewayctl_with_stdin(server: &str, args: &[&str], input: &str) -> CliOutput {
    run(server, args, Some(input)).await
}

async fn run(server: &str, args: &[&str], input: Option<&str>) -> CliOutput {
    let mut command = Command::new(binary_path("gatewayctl"));
    command
        .arg("--server")
        .arg(server)
        .args(args)
        .env_remove("GATEWAYCTL_SERVER")
        .env_remove("GATEWAYCTL_TOKEN")
        .env("NO_COLOR", "1");
    output_of(command, input).await
}

/// Runs a prepared `gatewayctl` command to its end, with `input` on its standard input (none:
/// no input at all), and collects what it printed.
pub async fn output_of(mut command: Command, input: Option<&str>) -> CliOutput {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let finished = async {
        let mut child = command.spawn()?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await?;
            // Dropping it closes the pipe: the end of the input.
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(CLI_TIMEOUT, finished)
        .await
        .unwrap_or_else(|_| panic!("gatewayctl {command:?} did not finish within {CLI_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run gatewayctl: {e}"));
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
