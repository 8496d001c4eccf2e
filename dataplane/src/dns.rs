//! DNS targets: a target whose host is a name stands for every address the name resolves to,
//! each its own target (own health, own load, own share of the weight's traffic), re-resolved
//! when the answer's TTL runs out.
//!
//! One watcher task per name in use, whatever the number of upstreams naming it. A watcher
//! keeps the last good answer through failures (a DNS outage does not empty an upstream) and,
//! when the addresses change, wakes [`Dns::changed`], on which the gateway recompiles the
//! config in service with the new addresses and swaps it in (same version: the config did not
//! change). Until a name is first resolved its target stays as configured, and the connector
//! resolves it per connection.
//!
//! Since each address is a target, a name with an address that does not serve (`localhost` on
//! an IPv4-only server resolving to `::1` too) needs health checking or retries, as any dead
//! target does; the per-connection resolver used to try the next address instead.
//!
//! Resolving is behind [`Lookup`]: hickory's resolver (system configuration) in service, a fake
//! in tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::TokioResolver;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Answers are kept at least this long, whatever their TTL (a TTL of 0 would mean a storm).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// And re-resolved at least this often.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// After a failed lookup.
const RETRY: Duration = Duration::from_secs(5);

/// What each name in use resolves to, sorted and without duplicates.
pub type Resolutions = BTreeMap<String, Vec<IpAddr>>;

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    /// How long the answer holds (its TTL).
    pub valid_for: Duration,
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Resolved, String>> + Send + 'a>>;

/// Resolves a host name to addresses.
pub trait Lookup: Send + Sync + 'static {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// hickory's resolver, configured from the system (`/etc/resolv.conf`, hosts file).
pub struct SystemLookup {
    resolver: TokioResolver,
}

impl SystemLookup {
    pub fn new() -> Result<SystemLookup, String> {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system DNS configuration: {e}"))?
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(SystemLookup { resolver })
    }
}

impl Lookup for SystemLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let answer = self
                .resolver
                .lookup_ip(host)
                .await
                .map_err(|e| e.to_string())?;
            let valid_for = answer
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            Ok(Resolved {
                addresses: answer.iter().collect(),
                valid_for,
            })
        })
    }
}

/// The names in use, their watchers and their latest answers.
pub struct Dns {
    lookup: OnceLock<Option<Arc<dyn Lookup>>>,
    resolutions: Arc<ArcSwap<Resolutions>>,
    watchers: Mutex<HashMap<String, JoinHandle<()>>>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("resolutions", &self.resolutions.load())
            .finish_non_exhaustive()
    }
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            lookup: OnceLock::new(),
            resolutions: Arc::default(),
            watchers: Mutex::default(),
            changed: Arc::default(),
        }
    }
}

impl Dns {
    /// Resolves with `lookup` rather than the system resolver.
    pub fn with_lookup(lookup: Arc<dyn Lookup>) -> Dns {
        let dns = Dns::default();
        let _ = dns.lookup.set(Some(lookup));
        dns
    }

    /// The latest answers.
    pub fn resolutions(&self) -> Arc<Resolutions> {
        self.resolutions.load_full()
    }

    /// Woken when a name's addresses change.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Watches exactly `hosts`: starts watchers for new names, stops those no longer used and
    /// forgets their answers. Must run inside a Tokio runtime.
    pub fn watch(&self, hosts: BTreeSet<String>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if hosts.is_empty() && watchers.is_empty() {
            return;
        }
        let Some(lookup) = self.lookup() else { return };
        watchers.retain(|host, task| {
            let keep = hosts.contains(host);
            if !keep {
                task.abort();
            }
            keep
        });
        self.resolutions.rcu(|answers| {
            let mut answers = Resolutions::clone(answers);
            answers.retain(|host, _| hosts.contains(host));
            answers
        });
        for host in hosts {
            watchers.entry(host.clone()).or_insert_with(|| {
                tokio::spawn(watch(
                    host,
                    Arc::clone(&lookup),
                    Arc::clone(&self.resolutions),
                    Arc::clone(&self.changed),
                ))
            });
        }
    }

    fn lookup(&self) -> Option<Arc<dyn Lookup>> {
        self.lookup
            .get_or_init(|| match SystemLookup::new() {
                Ok(lookup) => Some(Arc::new(lookup)),
                Err(error) => {
                    tracing::warn!(%error, "DNS targets will be resolved per connection only");
                    None
                }
            })
            .clone()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let watchers = self
            .watchers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, task) in watchers.drain() {
            task.abort();
        }
    }
}

/// Resolves `host` again and again, publishing changed answers.
async fn watch(
    host: String,
    lookup: Arc<dyn Lookup>,
    resolutions: Arc<ArcSwap<Resolutions>>,
    changed: Arc<Notify>,
) {
    loop {
        let wait = match lookup.lookup(&host).await {
            Ok(mut answer) if !answer.addresses.is_empty() => {
                answer.addresses.sort();
                answer.addresses.dedup();
                let before = resolutions.load().get(&host).cloned();
                if before.as_ref() != Some(&answer.addresses) {
                    tracing::info!(%host, addresses = ?answer.addresses, "DNS target resolved");
                    resolutions.rcu(|answers| {
                        let mut answers = Resolutions::clone(answers);
                        answers.insert(host.clone(), answer.addresses.clone());
                        answers
                    });
                    changed.notify_one();
                }
                answer.valid_for.clamp(MIN_TTL, MAX_TTL)
            }
            Ok(_) => {
                tracing::warn!(%host, "DNS answer without addresses; keeping the last ones");
                RETRY
            }
            Err(error) => {
                tracing::warn!(%host, %error, "DNS lookup failed; keeping the last addresses");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The host of a `host:port` address when it is a name, not an IP literal.
pub fn dns_name(address: &http::uri::Authority) -> Option<&str> {
    let host = address.host();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<IpAddr>().is_err().then_some(host)
}
