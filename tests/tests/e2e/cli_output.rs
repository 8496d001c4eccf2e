//! What `gatewayctl` prints, snapshotted from the real binary against a real control plane:
//! `list`/`get` in every `-o`, `status`, `history`, `diff` and its exit codes, errors, colour.
//! Volatile values (versions, times, ETags, addresses) are redacted; JSON and YAML outputs must
//! be exactly what `apply -f` takes back (a round trip that changes nothing).
//!
//! Review changed snapshots with `cargo insta review`, or rerun with `INSTA_UPDATE=always`.

use std::process::Stdio;

use gateway_tests::{CliOutput, ControlPlane, TestDb, binary_path};
use tokio::process::Command;

const CONFIG: &str = "\
kind: HealthCheckPolicy
name: hc
unhealthy_threshold: 3
healthy_threshold: 2
timeout_ms: 800
interval_ms: 2000
http:
  path: /ping
---
kind: Upstream
name: web
labels:
  team: web
health_check: hc
targets:
  - address: 10.0.0.1:8080
    weight: 1
  - address: 10.0.0.2:8080
    weight: 3
---
kind: Upstream
name: api
targets:
  - address: 10.0.0.3:8080
    weight: 1
---
kind: Route
name: web-root
labels:
  team: web
match:
  hosts: [cli.local]
  prefix: /
upstream: web
";

/// What changes from run to run, redacted so snapshots only change when the output does.
const VOLATILE: &[(&str, &str)] = &[
    // RFC 3339 times, then relative ones ("3s ago").
    (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
        "[TIME]",
    ),
    (r"\b\d+(ms|s|m|h|d) ago\b", "[AGO]"),
    // ETags: 16+ hex digits.
    (r"\b[0-9a-f]{16,}\b", "[ETAG]"),
    // This run's temporary directory and control plane port.
    (r"/[^\s]*/gw-e2e-cp-[^/\s]+", "[DIR]"),
    (r"127\.0\.0\.1:\d{4,5}\b", "127.0.0.1:[PORT]"),
];

fn snapshot(name: &str, out: &CliOutput) {
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        out.stdout,
        out.stderr
    );
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in VOLATILE {
        settings.add_filter(pattern, *replacement);
    }
    settings.bind(|| insta::assert_snapshot!(name, text));
}

async fn seeded() -> (TestDb, ControlPlane) {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let file = cp.write_file("gateway.yaml", CONFIG);
    cp.ctl(&["apply", "-f", file.to_str().expect("temp paths are UTF-8")])
        .await
        .assert_success();
    (db, cp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_get_in_every_output_format() {
    let (_db, cp) = seeded().await;
    for kind in ["upstream", "route", "healthcheck"] {
        for output in ["table", "wide", "json", "yaml", "name"] {
            let out = cp.ctl(&[kind, "list", "-o", output]).await;
            out.assert_success();
            snapshot(&format!("{kind}_list_{output}"), &out);
        }
    }
    for (kind, name) in [
        ("upstream", "web"),
        ("route", "web-root"),
        ("healthcheck", "hc"),
    ] {
        for output in ["table", "wide", "json", "yaml", "name"] {
            let out = cp.ctl(&[kind, "get", name, "-o", output]).await;
            out.assert_success();
            snapshot(&format!("{kind}_get_{output}"), &out);
        }
    }
    // A label selector narrows the list.
    let out = cp
        .ctl(&["upstream", "list", "-l", "team=web", "-o", "name"])
        .await;
    snapshot("upstream_list_selector", &out);
}

/// `describe` is `get` plus, in the table views, what refers to the resource (what a delete
/// would be refused for); its JSON and YAML are exactly `get`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_what_refers_to_a_resource() {
    let (_db, cp) = seeded().await;
    for (kind, name) in [
        ("upstream", "web"),
        ("route", "web-root"),
        ("healthcheck", "hc"),
    ] {
        let out = cp.ctl(&[kind, "describe", name]).await;
        out.assert_success();
        snapshot(&format!("{kind}_describe"), &out);
        for output in ["json", "yaml", "name"] {
            let described = cp.ctl(&[kind, "describe", name, "-o", output]).await;
            let got = cp.ctl(&[kind, "get", name, "-o", output]).await;
            assert_eq!(described.stdout, got.stdout, "{kind} -o {output}");
        }
    }
    cp.ctl(&["upstream", "describe", "nope"])
        .await
        .assert_refused();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_yaml_outputs_are_what_apply_takes() {
    let (_db, cp) = seeded().await;
    let before = cp.version().await;
    for (kind, name) in [
        ("upstream", "web"),
        ("route", "web-root"),
        ("healthcheck", "hc"),
    ] {
        for output in ["json", "yaml"] {
            let printed = cp.ctl(&[kind, "get", name, "-o", output]).await;
            printed.assert_success();
            let file = cp.write_file(&format!("{kind}.{output}"), &printed.stdout);
            let file = file.to_str().expect("temp paths are UTF-8");
            let diff = cp.ctl(&["diff", "-f", file]).await;
            assert_eq!(
                diff.status.code(),
                Some(0),
                "`{kind} get -o {output}` is not what apply takes back:\n{}\n{}{}",
                printed.stdout,
                diff.stdout,
                diff.stderr
            );
            cp.ctl(&["apply", "-f", file]).await.assert_success();
        }
    }
    // A list in YAML is a stream of documents, in JSON an array of them: apply takes both.
    for output in ["yaml", "json"] {
        let printed = cp.ctl(&["upstream", "list", "-o", output]).await;
        printed.assert_success();
        let file = cp.write_file(&format!("upstreams.{output}"), &printed.stdout);
        let file = file.to_str().expect("temp paths are UTF-8");
        let diff = cp.ctl(&["diff", "-f", file]).await;
        assert_eq!(
            diff.status.code(),
            Some(0),
            "`upstream list -o {output}` is not what apply takes back:\n{}\n{}{}",
            printed.stdout,
            diff.stdout,
            diff.stderr
        );
        cp.ctl(&["apply", "-f", file]).await.assert_success();
    }
    assert_eq!(
        cp.version().await,
        before,
        "re-applying printed outputs changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_and_diff_exit_codes() {
    let (_db, cp) = seeded().await;
    snapshot("status", &cp.ctl(&["status"]).await);
    snapshot("history", &cp.ctl(&["history"]).await);

    let same = cp.write_file("same.yaml", CONFIG);
    let out = cp
        .ctl(&["diff", "-f", same.to_str().expect("temp paths are UTF-8")])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    snapshot("diff_same", &out);

    let changed = cp.write_file("changed.yaml", &CONFIG.replace("weight: 3", "weight: 5"));
    let out = cp
        .ctl(&[
            "diff",
            "-f",
            changed.to_str().expect("temp paths are UTF-8"),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    snapshot("diff_changed", &out);

    let out = cp.ctl(&["diff", "-f", "/nonexistent/gateway.yaml"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    out.assert_refused();
    snapshot("diff_error", &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_a_non_zero_exit() {
    let (_db, cp) = seeded().await;
    let bad = cp.write_file("bad.yaml", "kind: Upstream\nname: x\ntargetz: []\n");
    let cases: [(&str, Vec<&str>); 4] = [
        ("error_not_found", vec!["upstream", "get", "nope"]),
        ("error_in_use", vec!["upstream", "delete", "web"]),
        (
            "error_bad_file",
            vec!["apply", "-f", bad.to_str().expect("temp paths are UTF-8")],
        ),
        ("error_bad_output", vec!["upstream", "list", "-o", "xml"]),
    ];
    for (name, args) in cases {
        let out = cp.ctl(&args).await;
        out.assert_refused();
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{args:?}: not one line:\n{}",
            out.stderr
        );
        snapshot(name, &out);
    }
    let out = gateway_tests::gatewayctl("http://127.0.0.1:1", &["status"]).await;
    out.assert_refused();
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
}

/// A problem in an apply file names the file, the line and column of the offending key or value,
/// the document and the resource, in YAML and in JSON read from standard input; nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_errors_name_file_line_column_and_document() {
    let (_db, cp) = seeded().await;
    let before = cp.version().await;
    let yaml = cp.write_file(
        "gateway.yaml",
        &format!(
            "{CONFIG}---\n\
             # A second route.\n\
             kind: Route\n\
             name: api\n\
             upstream: api\n\
             match:\n  hosts: [api.local]\n  pathprefix: /v1\n"
        ),
    );
    let out = cp
        .ctl(&["apply", "-f", yaml.to_str().expect("temp paths are UTF-8")])
        .await;
    out.assert_refused();
    snapshot("error_apply_unknown_field_yaml", &out);

    let json = "[\n  {\"kind\": \"Upstream\", \"name\": \"api\",\n   \"targets\": [{\"address\": \"10.0.0.3:8080\", \"weight\": \"heavy\"}]}\n]\n";
    let out =
        gateway_tests::gatewayctl_with_stdin(&cp.grpc_url(), &["apply", "-f", "-"], json).await;
    out.assert_refused();
    snapshot("error_apply_bad_value_json_stdin", &out);

    assert_eq!(
        cp.version().await,
        before,
        "an invalid file changed nothing"
    );
}

/// Colour only on a terminal without NO_COLOR: piped output never carries escape codes, with or
/// without NO_COLOR set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_colour_when_not_a_terminal() {
    let (_db, cp) = seeded().await;
    let changed = cp.write_file("changed.yaml", &CONFIG.replace("weight: 3", "weight: 5"));
    for no_color in [None, Some("1")] {
        for args in [
            vec![
                "diff",
                "-f",
                changed.to_str().expect("temp paths are UTF-8"),
            ],
            vec!["upstream", "list"],
            vec!["upstream", "get", "nope"],
        ] {
            let mut command = Command::new(binary_path("gatewayctl"));
            command
                .arg("--server")
                .arg(cp.grpc_url())
                .args(&args)
                .env_remove("GATEWAYCTL_TOKEN")
                .env_remove("CLICOLOR_FORCE")
                .stdin(Stdio::null());
            match no_color {
                Some(value) => command.env("NO_COLOR", value),
                None => command.env_remove("NO_COLOR"),
            };
            let output = command.output().await.unwrap();
            for stream in [&output.stdout, &output.stderr] {
                assert!(
                    !stream.contains(&0x1b),
                    "{args:?} (NO_COLOR={no_color:?}) printed an escape code: {}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }
}

/// Contexts through the real binary, against a control plane that needs a token: the stored
/// context reaches the server; flags beat the environment, which beats the file; and no
/// listing, in any format, nor any error shows a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_reach_the_server_and_never_print_a_token() {
    const TOKEN: &str = "e2e-context-token-0123456789abcdef";
    const WRONG: &str = "e2e-wrong-token-fedcba9876543210";
    let db = TestDb::create().await;
    let cp = ControlPlane::start_with_args(&db, &["--bootstrap-token", TOKEN]).await;
    let home = tempfile::tempdir().unwrap();
    let ctl = |args: &[&str], env: &[(&str, &str)], stdin: Option<&str>| {
        let mut command = Command::new(binary_path("gatewayctl"));
        command
            .args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env("NO_COLOR", "1")
            .env_remove("GATEWAYCTL_SERVER")
            .env_remove("GATEWAYCTL_TOKEN")
            .env_remove("GATEWAYCTL_TOKEN_FILE")
            .env_remove("GATEWAYCTL_CONTEXT")
            .env_remove("GATEWAYCTL_OUTPUT")
            .envs(env.iter().copied());
        let stdin = stdin.map(str::to_owned);
        async move { gateway_tests::output_of(command, stdin.as_deref()).await }
    };
    let never_shows_a_token = |out: &CliOutput| {
        for token in [TOKEN, WRONG] {
            assert!(
                !out.stdout.contains(token) && !out.stderr.contains(token),
                "printed a token: {out:?}"
            );
        }
    };

    let server = cp.grpc_url();
    let out = ctl(
        &[
            "config",
            "set-context",
            "prod",
            "--server",
            &server,
            "--token-stdin",
            "--use",
        ],
        &[],
        Some(&format!("{TOKEN}\n")),
    )
    .await;
    out.assert_success();
    never_shows_a_token(&out);
    for output in ["table", "wide", "json", "yaml", "name"] {
        let out = ctl(&["config", "get-contexts", "-o", output], &[], None).await;
        out.assert_success();
        never_shows_a_token(&out);
        assert!(out.stdout.contains("prod"), "{out:?}");
    }
    // The file's context and token reach the server.
    ctl(&["upstream", "list"], &[], None).await.assert_success();
    // The environment beats the file, and the refusal does not repeat the token.
    let out = ctl(&["upstream", "list"], &[("GATEWAYCTL_TOKEN", WRONG)], None).await;
    out.assert_refused();
    never_shows_a_token(&out);
    // A flag beats the environment.
    let out = ctl(
        &["--token", TOKEN, "upstream", "list"],
        &[("GATEWAYCTL_TOKEN", WRONG)],
        None,
    )
    .await;
    out.assert_success();
    let out = ctl(&["--token", WRONG, "upstream", "list"], &[], None).await;
    out.assert_refused();
    never_shows_a_token(&out);
    let out = ctl(&["--context", "nope", "upstream", "list"], &[], None).await;
    out.assert_refused();
    never_shows_a_token(&out);
}
