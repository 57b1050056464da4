//! Revocations in Redis (standalone or cluster): `revoke.lua` and `list.lua` over the keys of
//! [`crate::keys`], on a connection of their own so that a large list never queues behind, or
//! delays, rate-limit calls on the shared multiplexed connection.

use super::{Revocation, RevocationError, RevocationList, RevocationStore, RevokeRequest, Revoked};
use crate::keys;
use crate::storage::redis::{store_error, Connection};
use crate::storage::StoreError;
use redis::{Script, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const REVOKE: &str = include_str!("revoke.lua");
const LIST: &str = include_str!("list.lua");

/// Deadline of one revocation call. Generous next to the rate-limit deadline: a full list of a
/// large store takes a while, and nothing waits on it per request.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Revocations in Redis.
pub struct RedisRevocations {
    connection: Connection,
    revoke: Script,
    list: Script,
    max_entries: usize,
}

impl RedisRevocations {
    /// Opens a connection of its own (same URL forms as the rate-limit store).
    pub async fn connect(url: &str, max_entries: usize) -> Result<Self, StoreError> {
        Ok(RedisRevocations {
            connection: Connection::open(url, TIMEOUT).await?,
            revoke: Script::new(REVOKE),
            list: Script::new(LIST),
            max_entries,
        })
    }

    async fn call(
        &self,
        what: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<Vec<Value>, StoreError> {
        tokio::time::timeout(TIMEOUT, self.connection.invoke(&invocation))
            .await
            .map_err(|_| {
                StoreError::transient(format!(
                    "Redis did not answer the {what} script within {} s",
                    TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| store_error(&format!("Redis {what} script failed"), e))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn malformed(what: &str) -> StoreError {
    StoreError::permanent(format!(
        "unexpected reply from the revocation {what} script"
    ))
}

fn int(value: Option<&Value>, what: &str) -> Result<u64, StoreError> {
    match value {
        Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| malformed(what)),
        _ => Err(malformed(what)),
    }
}

impl RevocationStore for RedisRevocations {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke(&self, request: &RevokeRequest) -> Result<Revoked, RevocationError> {
        request.validate(unix_now())?;
        let mut invocation = self.revoke.prepare_invoke();
        invocation
            .key(keys::REVOCATION_VERSION)
            .key(keys::REVOCATION_ENTRIES)
            .key(keys::REVOCATION_BY_VERSION)
            .key(keys::REVOCATION_BY_EXPIRY)
            .arg(keys::revocation_id(&request.issuer, &request.jti))
            .arg(request.expires_at)
            .arg(self.max_entries);
        let reply = self.call("revoke", invocation).await?;
        let status = int(reply.first(), "revoke")?;
        let version = int(reply.get(1), "revoke")?;
        let live = int(reply.get(2), "revoke")?;
        match status {
            0 | 1 => Ok(Revoked {
                version,
                changed: status == 0,
                live,
            }),
            2 => Err(RevocationError::Invalid(format!(
                "revocation expires_at {} is not in the future by the store's clock",
                request.expires_at
            ))),
            3 => Err(RevocationError::Full {
                max: self.max_entries,
            }),
            _ => Err(malformed("revoke").into()),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(since_version))]
    async fn list(&self, since_version: u64) -> Result<RevocationList, RevocationError> {
        let mut invocation = self.list.prepare_invoke();
        invocation
            .key(keys::REVOCATION_VERSION)
            .key(keys::REVOCATION_BY_VERSION)
            .key(keys::REVOCATION_BY_EXPIRY)
            .arg(since_version);
        let reply = self.call("list", invocation).await?;
        let version = int(reply.first(), "list")?;
        let full = int(reply.get(1), "list")? == 1;
        let live = int(reply.get(2), "list")?;
        let rows = reply.get(3..).unwrap_or_default();
        let mut revocations = Vec::with_capacity(rows.len() / 2);
        for pair in rows.chunks(2) {
            let (Some(Value::BulkString(record)), Some(entry_version)) =
                (pair.first(), pair.get(1))
            else {
                return Err(malformed("list").into());
            };
            let (expires_at, issuer, jti) =
                keys::parse_revocation_record(record).ok_or_else(|| malformed("list"))?;
            revocations.push(Revocation {
                issuer,
                jti,
                expires_at,
                version: int(Some(entry_version), "list")?,
            });
        }
        Ok(RevocationList {
            revocations,
            version,
            full,
            live,
        })
    }
}
