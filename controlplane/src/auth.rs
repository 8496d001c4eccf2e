//! Who is calling, and what they may do.
//!
//! Callers present `Authorization: Bearer <token>` (REST header or gRPC metadata). A token
//! resolves to a [`Principal`]: the bootstrap token given at start-up (admin `bootstrap`), or a
//! token stored in the `tokens` table, of which only the SHA-256 is kept. Roles:
//! - `admin`: reads and writes the config, manages tokens;
//! - `viewer`: reads only;
//! - `dataplane`: opens the discovery stream, and nothing else (data planes never hold admin
//!   tokens and admins never open discovery streams).
//!
//! Invariants:
//! - a presented token is always checked, role included, whatever the mode;
//! - a request *without* a token is `anonymous` with every right only when `--insecure-no-auth`
//!   is set, or in the local fallback: no bootstrap token, both listeners on loopback, and no
//!   admin token in the store. Creating the first admin token ends the fallback.

use std::fmt;
use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::Store;

/// Reserved principal names: no stored token may take them.
pub const ANONYMOUS: &str = "anonymous";
pub const BOOTSTRAP: &str = "bootstrap";

/// Every generated token starts with this, so leaked tokens are easy to recognise and scan for.
const TOKEN_PREFIX: &str = "gw_";

/// A bootstrap token shorter than this is refused: it must be as hard to guess as a generated one.
const MIN_BOOTSTRAP_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
    Dataplane,
}

impl Role {
    pub const NAMES: &'static str = "admin, viewer or dataplane";

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Dataplane => "dataplane",
        }
    }

    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            "dataplane" => Some(Role::Dataplane),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller: audit rows name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal {
            name: ANONYMOUS.into(),
            role: Role::Admin,
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading config, status, history, audit: admin or viewer.
    Read,
    /// Changing the config: admin.
    Write,
    /// Creating, listing and revoking tokens: admin.
    ManageTokens,
    /// The discovery stream: dataplane.
    Discovery,
}

impl Access {
    fn allows(self, role: Role) -> bool {
        match self {
            Access::Read => matches!(role, Role::Admin | Role::Viewer),
            Access::Write | Access::ManageTokens => role == Role::Admin,
            Access::Discovery => role == Role::Dataplane,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Access::Read => "reading needs an admin or viewer token",
            Access::Write => "changing the config needs an admin token",
            Access::ManageTokens => "managing tokens needs an admin token",
            Access::Discovery => "the discovery stream needs a dataplane token",
        }
    }
}

/// How requests without a token are treated; decided once, at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// `--insecure-no-auth`: always allowed.
    Always,
    /// Loopback listeners and no bootstrap token: allowed while the store holds no admin token.
    UntilFirstAdminToken,
    /// Never.
    Never,
}

/// The start-up settings that decide [`AnonymousAccess`].
pub struct AuthSettings {
    pub bootstrap_token: Option<String>,
    pub insecure_no_auth: bool,
    /// `(flag, address)` of every listener.
    pub listeners: Vec<(&'static str, SocketAddr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "no authentication is configured and {flag} {address} is not a loopback address: give an admin token with --bootstrap-token-file or GATEWAY_BOOTSTRAP_TOKEN, or pass --insecure-no-auth to run without authentication"
    )]
    Unprotected {
        flag: &'static str,
        address: SocketAddr,
    },
    #[error(
        "the bootstrap token must be at least {MIN_BOOTSTRAP_LEN} characters of printable ASCII without spaces (e.g. `openssl rand -hex 32`)"
    )]
    WeakBootstrap,
}

#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    bootstrap_sha256: Option<String>,
    anonymous: AnonymousAccess,
}

impl Authenticator {
    /// Applies the start-up rule (see the module doc): refuses an unprotected non-loopback
    /// listener, and logs loudly whenever requests without a token will be let through.
    pub async fn configure(
        store: Store,
        settings: AuthSettings,
    ) -> Result<Authenticator, anyhow::Error> {
        let bootstrap_sha256 = match settings.bootstrap_token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(token) if !strong_enough(token) => {
                return Err(AuthSetupError::WeakBootstrap.into());
            }
            Some(token) => Some(token_sha256(token)),
        };
        let has_admin = store.has_admin_token().await?;
        let anonymous = if settings.insecure_no_auth {
            tracing::warn!(
                "--insecure-no-auth: requests without a token act as admin \"anonymous\"; anyone who can reach {} can change the config",
                describe(&settings.listeners)
            );
            AnonymousAccess::Always
        } else if bootstrap_sha256.is_some() {
            AnonymousAccess::Never
        } else if let Some((flag, address)) = settings
            .listeners
            .iter()
            .find(|(_, address)| !address.ip().is_loopback())
        {
            if !has_admin {
                return Err(AuthSetupError::Unprotected {
                    flag,
                    address: *address,
                }
                .into());
            }
            AnonymousAccess::Never
        } else {
            if !has_admin {
                tracing::warn!(
                    "no authentication configured: requests without a token on the loopback listeners act as admin \"anonymous\" until the first admin token is created (see --bootstrap-token-file)"
                );
            }
            AnonymousAccess::UntilFirstAdminToken
        };
        Ok(Authenticator {
            store,
            bootstrap_sha256,
            anonymous,
        })
    }

    /// Resolves the `Authorization` header's value (if any) and checks it grants `access`.
    pub async fn check(
        &self,
        authorization: Option<&[u8]>,
        access: Access,
    ) -> Result<Principal, ApiError> {
        let principal = match authorization {
            Some(value) => self.resolve(bearer(value)?).await?,
            // Anonymous, where allowed, may do everything, data-plane streams included.
            None => return self.anonymous().await,
        };
        if !access.allows(principal.role) {
            return Err(ApiError::PermissionDenied(format!(
                "{} (the token {:?} has role {})",
                access.describe(),
                principal.name,
                principal.role
            )));
        }
        Ok(principal)
    }

    async fn resolve(&self, token: &str) -> Result<Principal, ApiError> {
        let hash = token_sha256(token);
        if self.bootstrap_sha256.as_deref() == Some(hash.as_str()) {
            return Ok(Principal {
                name: BOOTSTRAP.into(),
                role: Role::Admin,
            });
        }
        self.store.token_by_sha256(&hash).await?.ok_or_else(|| {
            ApiError::Unauthenticated("the token is not valid (unknown or revoked)".into())
        })
    }

    async fn anonymous(&self) -> Result<Principal, ApiError> {
        let allowed = match self.anonymous {
            AnonymousAccess::Always => true,
            AnonymousAccess::UntilFirstAdminToken => !self.store.has_admin_token().await?,
            AnonymousAccess::Never => false,
        };
        if allowed {
            Ok(Principal::anonymous())
        } else {
            Err(ApiError::Unauthenticated(
                "a token is required: send `Authorization: Bearer <token>`".into(),
            ))
        }
    }
}

/// The token in `Bearer <token>`.
fn bearer(value: &[u8]) -> Result<&str, ApiError> {
    let malformed =
        || ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into());
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

fn strong_enough(token: &str) -> bool {
    token.len() >= MIN_BOOTSTRAP_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

fn describe(listeners: &[(&'static str, SocketAddr)]) -> String {
    listeners
        .iter()
        .map(|(_, address)| address.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Hex SHA-256 of a token: what the store keeps.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `gw_` and 256 random bits in hex.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Token names appear in audit rows; like resource names, plus `.`, `_` and `@` for people.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let valid = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._@".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        return Err(format!(
            "{name:?} is not a valid token name (1 to 128 lowercase letters, digits, '-', '.', '_' or '@', starting with a letter or digit)"
        ));
    }
    if name == ANONYMOUS || name == BOOTSTRAP {
        return Err(format!("{name:?} is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc").unwrap(), "abc");
        assert_eq!(bearer(b"bearer  abc ").unwrap(), "abc");
        for bad in [
            &b"abc"[..],
            b"Basic abc",
            b"Bearer ",
            b"Bearer",
            b"\xff\xfe",
        ] {
            assert!(matches!(bearer(bad), Err(ApiError::Unauthenticated(_))));
        }
    }

    #[test]
    fn roles_grant_what_they_say() {
        use Access::*;
        assert!(Read.allows(Role::Admin) && Read.allows(Role::Viewer));
        assert!(!Read.allows(Role::Dataplane));
        assert!(Write.allows(Role::Admin) && !Write.allows(Role::Viewer));
        assert!(!ManageTokens.allows(Role::Viewer));
        assert!(Discovery.allows(Role::Dataplane) && !Discovery.allows(Role::Admin));
    }

    #[test]
    fn generated_tokens_are_distinct_and_long() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert!(strong_enough(&a));
        assert!(!strong_enough("short"));
        assert!(!strong_enough(&format!("{a} with spaces")));
    }

    #[test]
    fn token_names() {
        for good in ["ci", "alice@example.com", "deploy-bot_2", "a.b"] {
            assert!(check_token_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Alice", "-x", "has space", ANONYMOUS, BOOTSTRAP] {
            assert!(check_token_name(bad).is_err(), "{bad}");
        }
    }
}
