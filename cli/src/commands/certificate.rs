//! `gatewayctl certificate …`: TLS certificates the data planes serve by SNI. Private keys go
//! to the control plane and never come back: `get` and `list` show the chain's names and
//! expiry, never the key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gateway_proto::v1::{Certificate, DeleteRequest, GetRequest, ListRequest};

use super::{Client, Context, Crud, Managed, run_crud};
use crate::flags;
use crate::output::{self, Row};

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Create a certificate from PEM files
    Create(CertificateArgs),
    /// Replace a certificate (a renewal): new handshakes get it, open connections keep theirs
    Replace(CertificateArgs),
    /// List certificates with their names and expiry
    #[command(visible_alias = "ls")]
    List {
        /// Only those with this label, repeatable (all must match)
        #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE", value_parser = flags::key_value)]
        selector: Vec<(String, String)>,
    },
    /// Show one certificate (without its private key)
    Get { name: String },
    /// Show one certificate and what refers to it (the upstreams that present it); -o json|yaml|name print what
    /// get prints
    Describe { name: String },
    /// Delete a certificate (refused while an upstream presents it)
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// Name: lowercase letters, digits and '-', 1 to 63 characters
    name: String,
    /// PEM file of the chain: the leaf first, then intermediates
    #[arg(long = "cert", value_name = "FILE")]
    cert: PathBuf,
    /// PEM file of the private key (PKCS#8, PKCS#1 or SEC1)
    #[arg(long = "key", value_name = "FILE")]
    key: PathBuf,
    /// A host name it serves, exact or `*.example.com`; repeatable
    #[arg(long = "sni", value_name = "NAME")]
    sni: Vec<String>,
    /// A label, repeatable; `default=true` makes it the certificate for unknown names
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = flags::key_value)]
    labels: Vec<(String, String)>,
}

impl CertificateArgs {
    fn into_certificate(self) -> anyhow::Result<Certificate> {
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
        };
        Ok(Certificate {
            certificate_pem: read(&self.cert, "--cert")?,
            private_key_pem: read(&self.key, "--key")?,
            name: self.name,
            labels: self.labels.into_iter().collect(),
            sni: self.sni,
            not_after: String::new(),
        })
    }
}

pub async fn run(ctx: &Context, command: CertificateCommand) -> anyhow::Result<()> {
    let verb = match command {
        CertificateCommand::Create(args) => Crud::Create(args.into_certificate()?),
        CertificateCommand::Replace(args) => Crud::Replace(args.into_certificate()?),
        CertificateCommand::List { selector } => Crud::List(selector.into_iter().collect()),
        CertificateCommand::Get { name } => Crud::Get(name),
        CertificateCommand::Describe { name } => Crud::Describe(name),
        CertificateCommand::Delete { name } => Crud::Delete(name),
    };
    run_crud(ctx, verb, |certificate| certificate).await
}

impl Managed for Certificate {
    const PLURAL: &'static str = "certificates";

    fn used_by(config: &gateway_proto::v1::Config, name: &str) -> Vec<String> {
        super::references(
            gateway_proto::kind::Kind::Upstream,
            config.upstreams_using_certificate(name),
        )
    }

    async fn create(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.create_certificate(item).await?.into_inner())
    }
    async fn replace(client: &mut Client, item: Self) -> Result<Self, tonic::Status> {
        Ok(client.replace_certificate(item).await?.into_inner())
    }
    async fn list_page(
        client: &mut Client,
        request: ListRequest,
    ) -> Result<(Vec<Self>, String), tonic::Status> {
        let page = client.list_certificates(request).await?.into_inner();
        Ok((page.items, page.next_page_token))
    }
    async fn get(client: &mut Client, name: String) -> Result<Self, tonic::Status> {
        Ok(client
            .get_certificate(GetRequest { name })
            .await?
            .into_inner())
    }
    async fn delete(client: &mut Client, name: String) -> Result<u64, tonic::Status> {
        let response = client
            .delete_certificate(DeleteRequest {
                name,
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().version)
    }
}

impl Row for Certificate {
    const HEADERS: &'static [&'static str] = &["NAME", "SNI", "NOT AFTER", "LABELS"];
    const NARROW: usize = 3;

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            output::or_dash(output::joined(self.sni.iter())),
            output::or_dash(self.not_after.clone()),
            output::labels(&self.labels),
        ]
    }
}
