//! Prints the benchmark config (see `support/config.rs`) as JSON, for `tests/bench/load.sh`.
//!
//! ```sh
//! bench-config --routes 10000 --upstreams 1000 --target 127.0.0.1:19080 > config.json
//! curl -X POST --data-binary @config.json -H 'content-type: application/json' \
//!      http://127.0.0.1:19090/v1/apply
//! bench-config --routes 10000 --upstreams 1000 --route 9999 --revision 7   # one route, for PUT
//! bench-config --routes 10000 --request 9999      # "HOST PATH" of route 9999's requests
//! ```

#[path = "support/config.rs"]
mod bench_config;

use clap::Parser;

/// The benchmark config as JSON for `POST /v1/apply`.
#[derive(Debug, Parser)]
struct Flags {
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    #[arg(long, default_value_t = 1_000)]
    upstreams: usize,
    /// Address of every upstream's only target.
    #[arg(long, default_value = "127.0.0.1:19080")]
    target: String,
    /// Print only route I (a `PUT /v1/routes/NAME` body) instead of the whole config.
    #[arg(long, value_name = "I")]
    route: Option<usize>,
    /// With --route: the value of the `x-bench-rev` request header the route sets.
    #[arg(long)]
    revision: Option<u64>,
    /// Print the Host header and path that route I matches, and nothing else.
    #[arg(long, value_name = "I")]
    request: Option<usize>,
    /// Add route `catch-all`: any host, prefix `/`, to the first upstream. Host-less routes
    /// are tried after every host-specific one, so it changes no other route's match.
    #[arg(long)]
    catch_all: bool,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if let Some(i) = flags.request {
        let (host, path) = bench_config::route_request(i);
        println!("{host} {path}");
        return Ok(());
    }
    let json = match flags.route {
        Some(i) => {
            let route = bench_config::route(i, flags.upstreams, flags.revision);
            serde_json::to_string(&route)?
        }
        None => {
            let target = flags.target.clone();
            let mut config =
                bench_config::config(flags.routes, flags.upstreams, |_| target.clone());
            if flags.catch_all {
                config.routes.push(bench_config::catch_all());
            }
            serde_json::to_string(&config)?
        }
    };
    println!("{json}");
    Ok(())
}
