//! One module per noun of the command line, plus what they share: the connection to the
//! control plane ([`Context`]), the mapping of gRPC failures to the two error messages users see,
//! and the list/get/delete/create/replace verbs that every resource kind has ([`Crud`]).

pub mod apply;
pub mod audit;
pub mod certificate;
pub mod config;
pub mod dataplane;
pub mod diff;
pub mod export;
pub mod healthcheck;
pub mod history;
pub mod route;
pub mod status;
pub mod token;
pub mod top;
pub mod upstream;
pub mod version;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use gateway_proto::kind::{Resource, resource_ref};
use gateway_proto::v1::admin_service_client::AdminServiceClient;
use gateway_proto::v1::{Config, ListRequest};
use serde::Serialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::output::{self, Format, Row};

pub type Client = AdminServiceClient<InterceptedService<Channel, BearerToken>>;

/// What every command needs: where the control plane is, how to authenticate, how to print.
pub struct Context {
    pub server: String,
    token: Option<String>,
    pub format: Format,
}

impl Context {
    pub fn new(server: String, token: Option<String>, format: Format) -> Self {
        let token = token.filter(|t| !t.is_empty());
        Context {
            server,
            token,
            format,
        }
    }

    /// Connects now, so an unreachable server is reported as such before any request is sent.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.token {
            None => BearerToken(None),
            Some(token) => {
                // Never echo the token: the error names the flag, not the value.
                let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    anyhow!(
                        "--token (GATEWAYCTL_TOKEN) contains characters not allowed in a header"
                    )
                })?;
                BearerToken(Some(value))
            }
        };
        let endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("invalid --server {:?}", self.server))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60));
        let channel = endpoint.connect().await.map_err(|e| self.unreachable(&e))?;
        Ok(AdminServiceClient::with_interceptor(channel, token))
    }

    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> anyhow::Error {
        anyhow!(
            "cannot reach the control plane at {}: {}",
            self.server,
            cause(error)
        )
    }

    /// Turns a failed call into `error: <status message>`, or into the unreachable message when
    /// the call never got an answer from the server.
    pub fn rpc_error(&self, status: tonic::Status) -> anyhow::Error {
        if let Some(source) = status.source() {
            // Statuses the server sends carry no source; local transport failures do.
            if status.code() == tonic::Code::Unavailable {
                return self.unreachable(source);
            }
        }
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            status.message().to_owned()
        };
        match status.code() {
            tonic::Code::Unauthenticated if self.token.is_none() => {
                anyhow!(
                    "{message} (no token was sent: give one with --token-file, GATEWAYCTL_TOKEN or a context, see `gatewayctl config --help`)"
                )
            }
            _ => anyhow!("{message}"),
        }
    }
}

/// The most specific causes of an error, joined: `tcp connect error: Connection refused (os error 111)`.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let message = e.to_string();
        // Wrappers such as "transport error" add nothing a user can act on.
        if message != "transport error" && messages.last() != Some(&message) {
            messages.push(message);
        }
        next = e.source();
    }
    if messages.is_empty() {
        error.to_string()
    } else {
        messages.join(": ")
    }
}

/// Adds `authorization: Bearer …` to every request when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The verbs every kind of resource has. `A` are the flags of create and replace.
pub enum Crud<A> {
    Create(A),
    Replace(A),
    /// With a label selector (all must match).
    List(BTreeMap<String, String>),
    Get(String),
    /// `get`, and in the table views what refers to the resource.
    Describe(String),
    Delete(String),
}

/// A resource kind the admin API manages, with its five RPCs.
pub(crate) trait Managed: Resource + Serialize + Row + Sized {
    /// Plural noun for messages: `no routes`.
    const PLURAL: &'static str;
    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status>;
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status>;
    /// One page of the list; the second value is the next page's token (empty at the end).
    async fn list_page(
        client: &mut Client,
        request: ListRequest,
    ) -> Result<(Vec<Self>, String), tonic::Status>;
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status>;
    /// Returns the config version the delete produced.
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status>;
    /// The resources of `config` that refer to the one named `name` (`route/api`), which a
    /// delete would be refused for.
    fn used_by(_config: &Config, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Runs one verb; `build` turns flags into the resource (locally, before connecting).
pub(crate) async fn run_crud<R: Managed, A>(
    ctx: &Context,
    verb: Crud<A>,
    build: impl FnOnce(A) -> R,
) -> anyhow::Result<()> {
    let format = ctx.format;
    match verb {
        Crud::Create(args) => {
            let item = build(args);
            let mut client = ctx.client().await?;
            let created = R::create(&mut client, item)
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            done(format, &created, "created")
        }
        Crud::Replace(args) => {
            let item = build(args);
            let mut client = ctx.client().await?;
            let replaced = R::replace(&mut client, item)
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            done(format, &replaced, "replaced")
        }
        Crud::List(selector) => {
            let mut client = ctx.client().await?;
            let mut items = list_all::<R>(&mut client, &selector)
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            items.sort_by(|a, b| a.name().cmp(b.name()));
            output::resources(format, &items, R::PLURAL)
        }
        Crud::Get(name) => {
            let mut client = ctx.client().await?;
            let item = R::get(&mut client, name)
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            output::resource(format, &item)
        }
        Crud::Describe(name) => {
            let mut client = ctx.client().await?;
            let item = R::get(&mut client, name)
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            output::resource(format, &item)?;
            if matches!(format, Format::Table | Format::Wide) {
                let version = export::current_version(ctx, &mut client).await?;
                let config = export::config_at(ctx, &mut client, version).await?;
                output::emit(&used_by_line(&R::used_by(&config, item.name())))?;
            }
            Ok(())
        }
        Crud::Delete(name) => {
            let mut client = ctx.client().await?;
            let version = R::delete(&mut client, name.clone())
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            let response = gateway_proto::v1::DeleteResponse { version };
            let reference = resource_ref(R::KIND, &name);
            if format == Format::Name {
                return output::names(&[reference]);
            }
            let text = format!("{reference} deleted (config version {version})\n");
            output::message(format, &response, &text)
        }
    }
}

/// `route/a`, `route/b` for routes `a` and `b`.
fn references(kind: gateway_proto::kind::Kind, names: Vec<String>) -> Vec<String> {
    names.iter().map(|name| resource_ref(kind, name)).collect()
}

/// `used by: route/a, route/b` (or `nothing`), under `describe`'s table.
fn used_by_line(references: &[String]) -> String {
    if references.is_empty() {
        "used by: nothing\n".to_owned()
    } else {
        format!("used by: {}\n", references.join(", "))
    }
}

/// The most items one list request asks for (the control plane's maximum page).
pub const PAGE_SIZE: u32 = 1000;

/// Every item of a list, page after page.
pub(crate) async fn list_all<R: Managed>(
    client: &mut Client,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<R>, tonic::Status> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListRequest {
            page_size: PAGE_SIZE,
            page_token,
            labels: labels.clone(),
        };
        let (page, next) = R::list_page(client, request).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        page_token = next;
    }
}

/// After create or replace: a one-line confirmation for people, the stored resource otherwise.
fn done<R: Managed>(format: Format, item: &R, verb: &str) -> anyhow::Result<()> {
    match format {
        Format::Table | Format::Wide => {
            output::emit(&format!("{} {verb}\n", resource_ref(R::KIND, item.name())))
        }
        _ => output::resource(format, item),
    }
}
