//! `gatewayctl token …`: API tokens with roles (admin, viewer, dataplane). The control plane keeps
//! only a hash; `create` prints the token the one time it exists in clear.

use clap::{Subcommand, ValueEnum};
use gateway_proto::v1::{CreateTokenRequest, ListRequest, RevokeTokenRequest, Token};

use super::Context;
use crate::output::{self, Format, Row};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown)
    #[command(after_help = "\
In table format the token alone goes to standard output and the notice to standard error, so
`TOKEN=$(gatewayctl token create ci --role admin)` captures just the token. -o json|yaml print
the token's record with its `secret`.")]
    Create {
        /// 1 to 128 lowercase letters, digits, '-', '.', '_' or '@'; audit rows name it
        name: String,
        /// admin reads and writes, viewer only reads, dataplane only opens the discovery stream
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List tokens (names and roles; never the tokens themselves)
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a token: it stops working at once
    #[command(visible_alias = "rm")]
    Revoke { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Viewer,
    Dataplane,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Admin => "admin",
            RoleArg::Viewer => "viewer",
            RoleArg::Dataplane => "dataplane",
        }
    }
}

pub async fn run(ctx: &Context, command: TokenCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    match command {
        TokenCommand::Create { name, role } => {
            let created = client
                .create_token(CreateTokenRequest {
                    name: name.clone(),
                    role: role.as_str().into(),
                })
                .await
                .map_err(|s| ctx.rpc_error(s))?
                .into_inner();
            match ctx.format {
                Format::Table | Format::Wide => {
                    eprintln!(
                        "token {name:?} created with role {}; it is shown only this once:",
                        role.as_str()
                    );
                    output::emit(&format!("{}\n", created.secret))
                }
                format => output::message(format, &created, ""),
            }
        }
        TokenCommand::List => {
            let items = client
                .list_tokens(ListRequest::default())
                .await
                .map_err(|s| ctx.rpc_error(s))?
                .into_inner()
                .items;
            output::rows(ctx.format, &items, "tokens")
        }
        TokenCommand::Revoke { name } => {
            client
                .revoke_token(RevokeTokenRequest { name: name.clone() })
                .await
                .map_err(|s| ctx.rpc_error(s))?;
            let text = format!("token {name:?} revoked\n");
            output::message(ctx.format, &serde_json::json!({}), &text)
        }
    }
}

impl Row for Token {
    const HEADERS: &'static [&'static str] = &["NAME", "ROLE", "CREATED", "CREATED BY"];
    const NARROW: usize = 4;

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.role.clone(),
            self.created_at.clone(),
            self.created_by.clone(),
        ]
    }

    fn reference(&self) -> String {
        format!("token/{}", self.name)
    }
}
