//! The binary's operator subcommands (`revoke`, `list-revocations`; part of `main.rs`, not of the
//! library): gRPC clients of a running service's `edgegate.revocation.v1.RevocationService`,
//! printing JSON on stdout. `revoke` sends the revocation token as `authorization: Bearer
//! <token>` metadata; `list-revocations` needs none (the service serves the list openly).

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use ratelimit_service::proto::revocation::revocation_service_client::RevocationServiceClient;
use ratelimit_service::proto::revocation::{ListRevocationsRequest, RevokeRequest};
use ratelimit_service::revocation::Revocation;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tonic::metadata::MetadataValue;

/// Operator clients of a running service (they talk to its gRPC port).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Revoke a token (its `jti`) until a time; prints {"version":N}.
    Revoke {
        /// The running service's gRPC address (host:port or http://host:port).
        #[arg(long, default_value = "127.0.0.1:8081")]
        grpc_addr: String,
        /// The token's `iss` claim, exactly as in the token.
        #[arg(long)]
        issuer: String,
        /// The token's `jti` claim.
        #[arg(long)]
        jti: String,
        /// Until when: Unix seconds (normally the token's `exp`), or `+` and a duration from
        /// now: `+90s`, `+30m`, `+12h`, `+7d`.
        #[arg(long, value_parser = parse_until)]
        until: u64,
        /// File holding the service's revocation token (sent as `authorization: Bearer
        /// <token>`). Or put the token in the RLS_REVOCATION_TOKEN environment variable.
        #[arg(long, env = "RLS_REVOCATION_TOKEN_FILE", value_name = "PATH")]
        revocation_token_file: Option<PathBuf>,
    },
    /// Print the live revocations added after a version (all of them by default) as JSON.
    ListRevocations {
        /// The running service's gRPC address (host:port or http://host:port).
        #[arg(long, default_value = "127.0.0.1:8081")]
        grpc_addr: String,
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `1767225600` (Unix seconds) or `+<n><s|m|h|d>` from now.
fn parse_until(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let Some(relative) = text.strip_prefix('+') else {
        return text.parse().map_err(|_| {
            format!("invalid time {text:?} (expected Unix seconds, or e.g. +30m, +12h, +7d)")
        });
    };
    let split = relative
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(relative.len());
    let (number, unit) = relative.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (expected e.g. +30m, +12h, +7d)"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (expected s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(unit_secs)
        .and_then(|secs| secs.checked_add(unix_now()))
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

async fn revocation_client(
    grpc_addr: &str,
) -> Result<RevocationServiceClient<tonic::transport::Channel>> {
    let url = if grpc_addr.contains("://") {
        grpc_addr.to_owned()
    } else {
        format!("http://{grpc_addr}")
    };
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid gRPC address {grpc_addr:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(RevocationServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

fn status_error(operation: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!(
        "{operation} failed: {:?}: {}",
        status.code(),
        status.message()
    )
}

/// A `Revoke` call carrying the token, if any. The metadata value is marked sensitive (HPACK
/// never indexes it).
fn revoke_request(
    message: RevokeRequest,
    token: Option<&str>,
) -> Result<tonic::Request<RevokeRequest>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        // validate_token allowed only printable ASCII: this cannot fail, but is not unwrapped.
        let mut value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow!("the revocation token is not printable ASCII"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// `revoke`: reads the token (file or environment), then calls Revoke with it.
async fn revoke(
    grpc_addr: &str,
    message: RevokeRequest,
    token_file: Option<PathBuf>,
) -> Result<u64> {
    let token = crate::revocation_token(token_file.as_deref(), std::env::var_os(crate::TOKEN_ENV))?;
    let request = revoke_request(message, token.as_deref())?;
    let reply = revocation_client(grpc_addr)
        .await?
        .revoke(request)
        .await
        .map_err(|status| {
            let no_token = token.is_none() && status.code() == tonic::Code::Unauthenticated;
            let error = status_error("revoke", status);
            if no_token {
                anyhow!(
                    "{error}; no revocation token was given (--revocation-token-file or \
                     RLS_REVOCATION_TOKEN)"
                )
            } else {
                error
            }
        })?;
    Ok(reply.into_inner().version)
}

/// `list-revocations` output: the shape and field order of `GET /revocations`.
#[derive(serde::Serialize)]
struct ListOutput {
    revocations: Vec<Revocation>,
    version: u64,
    full: bool,
}

pub async fn run(command: Command) -> Result<()> {
    let output = match command {
        Command::Revoke {
            grpc_addr,
            issuer,
            jti,
            until,
            revocation_token_file,
        } => {
            let message = RevokeRequest {
                issuer,
                jti,
                expires_at: until,
            };
            let version = revoke(&grpc_addr, message, revocation_token_file).await?;
            serde_json::json!({ "version": version }).to_string()
        }
        Command::ListRevocations { grpc_addr, since } => {
            let reply = revocation_client(&grpc_addr)
                .await?
                .list_revocations(ListRevocationsRequest {
                    since_version: since,
                })
                .await
                .map_err(|s| status_error("list-revocations", s))?
                .into_inner();
            let revocations: Vec<Revocation> = reply
                .revocations
                .into_iter()
                .map(|r| Revocation {
                    issuer: r.issuer,
                    jti: r.jti,
                    expires_at: r.expires_at,
                    version: r.version,
                })
                .collect();
            serde_json::to_string(&ListOutput {
                revocations,
                version: reply.version,
                full: reply.full,
            })?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{output}")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_unix_seconds_or_a_duration_from_now() {
        assert_eq!(parse_until("1767225600"), Ok(1_767_225_600));
        let now = unix_now();
        let in_an_hour = parse_until("+1h").unwrap();
        assert!(
            (now + 3600..=now + 3601).contains(&in_an_hour),
            "{in_an_hour}"
        );
        let in_a_week = parse_until("+7d").unwrap();
        assert!((now + 7 * 86_400..=now + 7 * 86_400 + 1).contains(&in_a_week));
        assert!(parse_until("+90").unwrap() >= now + 90);
        assert!(parse_until("+5w")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_until("tomorrow")
            .unwrap_err()
            .contains("Unix seconds"));
        assert!(parse_until("+").is_err());
        assert!(parse_until(&format!("+{}d", u64::MAX))
            .unwrap_err()
            .contains("too long"));
    }
}
