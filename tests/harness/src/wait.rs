//! Polling with a deadline: tests wait on conditions, never on fixed sleeps.

use anyhow::{bail, Result};
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Ok(Some(v))` or `timeout` passes. The last
/// error (or "still None") is reported on timeout with `what`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut every = Duration::from_millis(10);
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("condition not met yet"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(every).await;
        every = (every * 2).min(Duration::from_millis(200));
    }
}

/// [`until`] for probes that cannot fail, in tests: the value, or a panic naming `what` when
/// `within` passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let check = || {
        let next = probe();
        async move { Ok(next.await) }
    };
    match until(what, within, check).await {
        Ok(value) => value,
        Err(e) => panic!("{e:#}"),
    }
}
