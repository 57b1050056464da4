//! `ratelimit-service`: parse flags, set up logging, bind, print the bound addresses as one JSON
//! line on stdout, serve until SIGTERM/SIGINT. The `revoke` and `list-revocations`
//! subcommands are operator clients of a running service's RevocationService (`revoke` sends
//! the revocation token, read from the same places as the server's).

mod operator;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use operator::Command;
use ratelimit_service::config::{Config, LoadOptions};
use ratelimit_service::revocation::DEFAULT_MAX_ENTRIES;
use ratelimit_service::{
    run, validate_token, Listeners, RevocationAccess, Settings, StoreSettings,
};
use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreKind {
    Redis,
    Memory,
}

/// Envoy rate limit service (gRPC) with atomic Redis buckets.
#[derive(Debug, Parser)]
#[command(version, subcommand_negates_reqs = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file or directory of *.yaml files (envoyproxy/ratelimit format).
    #[arg(long, env = "RLS_CONFIG", required_unless_present = "validate")]
    config: Option<PathBuf>,
    /// Check a config file or directory, print OK or the error, and exit.
    #[arg(long, env = "RLS_VALIDATE", value_name = "PATH")]
    validate: Option<PathBuf>,
    /// redis://, rediss://, unix:///path.sock, or redis+cluster://host:port,host:port.
    #[arg(long, env = "RLS_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Where buckets live; `memory` is for a single instance (and tests).
    #[arg(long, env = "RLS_STORE", value_enum, default_value = "redis")]
    store: StoreKind,
    #[arg(long, env = "RLS_GRPC_ADDR", default_value = "127.0.0.1:8081")]
    grpc_addr: SocketAddr,
    #[arg(long, env = "RLS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Per-call Redis deadline (e.g. 20ms, 1s); past it the call answers UNAVAILABLE.
    #[arg(long, env = "RLS_REDIS_TIMEOUT", default_value = "20ms", value_parser = parse_duration)]
    redis_timeout: Duration,
    /// Most ShouldRateLimit decisions one Redis script call carries (1..=128): decisions that
    /// arrive while a call is in flight go out together as the next one. 1 turns this off (one
    /// call per decision, all in flight at once).
    #[arg(long, env = "RLS_REDIS_BATCH_LIMIT", default_value_t = 128,
          value_parser = clap::value_parser!(u16).range(1..=128))]
    redis_batch_limit: u16,
    /// Entries of the local over-limit cache; 0 disables it.
    #[arg(long, env = "RLS_LOCAL_CACHE_SIZE", default_value_t = 100_000)]
    local_cache_size: usize,
    /// How often the config is re-read for hot reload.
    #[arg(long, env = "RLS_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Add RateLimit-Limit/-Remaining/-Reset response headers.
    #[arg(long, env = "RLS_RATELIMIT_HEADERS")]
    ratelimit_headers: bool,
    /// Files naming the same domain add to it instead of being refused, as envoyproxy/ratelimit's
    /// MERGE_DOMAIN_CONFIG (a top-level descriptor both define is still refused).
    #[arg(long, env = "RLS_MERGE_DOMAIN_CONFIG")]
    merge_domain_config: bool,
    #[arg(long, env = "RLS_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Runtime worker threads; 0 means one per CPU.
    #[arg(long, env = "RLS_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
    /// Most live token revocations kept; a new one past this is refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "RLS_REVOCATION_MAX_ENTRIES", default_value_t = DEFAULT_MAX_ENTRIES)]
    revocation_max_entries: usize,
    /// File holding the bearer token of revocation writes (HTTP POST /revocations and gRPC
    /// Revoke) and of HTTP GET /revocations (unless --revocation-read-public), at least 16
    /// printable characters. Or put the token in the RLS_REVOCATION_TOKEN environment variable
    /// (not a flag: argv is visible to every user). Without either, writes are refused (HTTP
    /// 403, gRPC PERMISSION_DENIED). gRPC ListRevocations needs no token.
    #[arg(long, env = "RLS_REVOCATION_TOKEN_FILE", value_name = "PATH")]
    revocation_token_file: Option<PathBuf>,
    /// Serve HTTP GET /revocations without the token (the revoked jtis are then visible to
    /// whoever reaches the HTTP port); writes still need it.
    #[arg(long, env = "RLS_REVOCATION_READ_PUBLIC")]
    revocation_read_public: bool,
}

/// The token's environment variable (a value, unlike `--revocation-token-file`'s path).
const TOKEN_ENV: &str = "RLS_REVOCATION_TOKEN";

/// `250us`, `20ms`, `1s`, `2m` (humantime's units); a bare number is milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("invalid duration {text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} (expected e.g. 20ms, 1s): {e}"))
}

/// The revocation token from `--revocation-token-file` or from [`TOKEN_ENV`] (not both), or
/// none; trimmed and checked. The server keeps its digest, `revoke` sends it. An unusable token
/// is an error naming where it came from. An empty variable counts as unset, as clap treats
/// every other `RLS_*` variable (so `RLS_REVOCATION_TOKEN: ${RLS_REVOCATION_TOKEN:-}` in
/// docker-compose leaves the API disabled).
fn revocation_token(
    token_file: Option<&Path>,
    token_env: Option<OsString>,
) -> Result<Option<String>> {
    let token_env = token_env.filter(|value| !value.is_empty());
    let token = match (token_file, token_env) {
        (Some(_), Some(_)) => bail!(
            "--revocation-token-file (RLS_REVOCATION_TOKEN_FILE) and {TOKEN_ENV} are both set; \
             set one"
        ),
        (Some(path), None) => {
            let file = path.display();
            let token = std::fs::read_to_string(path).map_err(|err| {
                anyhow!("--revocation-token-file {file}: cannot read the token file: {err}")
            })?;
            validate_token(&token)
                .map_err(|err| anyhow!("--revocation-token-file {file}: {err}"))?
                .to_owned()
        }
        (None, Some(token)) => {
            let token = token
                .into_string()
                .map_err(|_| anyhow!("{TOKEN_ENV}: the token is not UTF-8"))?;
            validate_token(&token)
                .map_err(|err| anyhow!("{TOKEN_ENV}: {err}"))?
                .to_owned()
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(token))
}

/// Who may use the revocation API: [`revocation_token`]'s token, or nobody.
fn revocation_access(
    token_file: Option<&Path>,
    token_env: Option<OsString>,
    read_public: bool,
) -> Result<RevocationAccess> {
    let access = match revocation_token(token_file, token_env)? {
        Some(token) => RevocationAccess::with_token(&token)?,
        None => RevocationAccess::disabled(),
    };
    Ok(access.with_public_reads(read_public))
}

/// The operator subcommand, if any. For `revoke`, a `--revocation-token-file` given before the
/// subcommand (`ratelimit-service --revocation-token-file F revoke ...`) counts too.
fn take_command(args: &mut Args) -> Option<Command> {
    let mut command = args.command.take()?;
    if let Command::Revoke {
        revocation_token_file,
        ..
    } = &mut command
    {
        if revocation_token_file.is_none() {
            *revocation_token_file = args.revocation_token_file.take();
        }
    }
    Some(command)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Registers SIGTERM and SIGINT handlers now (before the address line tells anyone we are up)
/// and returns a future that completes on the first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
    })
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if let Some(command) = take_command(&mut args) {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|runtime| runtime.block_on(operator::run(command)));
        // An operator reads this: the message, not a backtrace.
        if let Err(err) = result {
            eprintln!("{err:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    if let Some(path) = &args.validate {
        let options = LoadOptions {
            merge_domains: args.merge_domain_config,
        };
        return match Config::load(path, options) {
            Ok(_) => {
                println!("OK");
                Ok(())
            }
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(1);
            }
        };
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.worker_threads > 0 {
        runtime.worker_threads(args.worker_threads);
    }
    runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    init_tracing(args.log_format);
    let shutdown = shutdown_signal()?;
    let Some(config_path) = args.config else {
        bail!("--config is required");
    };
    let revocation_access = revocation_access(
        args.revocation_token_file.as_deref(),
        std::env::var_os(TOKEN_ENV),
        args.revocation_read_public,
    )?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", args.grpc_addr))?;
    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding HTTP address {}", args.http_addr))?;
    let addresses = serde_json::json!({
        "grpc_addr": grpc.local_addr()?.to_string(),
        "http_addr": http.local_addr()?.to_string(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{addresses}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(grpc_addr = %grpc.local_addr()?, http_addr = %http.local_addr()?, "listening");

    let store = match args.store {
        StoreKind::Redis => StoreSettings::Redis {
            url: args.redis_url,
        },
        StoreKind::Memory => StoreSettings::Memory,
    };
    let settings = Settings {
        redis_timeout: args.redis_timeout,
        redis_batch_limit: usize::from(args.redis_batch_limit),
        local_cache_size: args.local_cache_size,
        ratelimit_headers: args.ratelimit_headers,
        load_options: LoadOptions {
            merge_domains: args.merge_domain_config,
        },
        reload_interval: args.reload_interval,
        revocation_max_entries: args.revocation_max_entries,
        revocation_access,
        ..Settings::new(config_path, store)
    };
    run(Listeners { grpc, http }, settings, shutdown)
        .await
        .context("rate limit service failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_millis(15)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 lightyears").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn the_cli_reads_the_same_token_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        assert_eq!(
            revocation_token(Some(&file), None).unwrap().as_deref(),
            Some("0123456789abcdef0123")
        );
        assert_eq!(
            revocation_token(None, Some(" 0123456789abcdef0123 ".into()))
                .unwrap()
                .as_deref(),
            Some("0123456789abcdef0123")
        );
        assert_eq!(revocation_token(None, None).unwrap(), None);
        assert_eq!(revocation_token(None, Some(OsString::new())).unwrap(), None);
        assert!(revocation_token(None, Some("short".into())).is_err());
    }

    #[test]
    fn the_revocation_token_comes_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let from_file = revocation_access(Some(&file), None, false).unwrap();
        assert!(from_file.token_configured());
        assert!(!from_file.reads_public());
        let from_env = revocation_access(None, Some("0123456789abcdef0123".into()), true).unwrap();
        assert!(from_env.token_configured());
        assert!(from_env.reads_public());
        let none = revocation_access(None, None, false).unwrap();
        assert!(!none.token_configured());

        let err = |file: Option<&Path>, env: Option<&str>| {
            format!(
                "{:#}",
                revocation_access(file, env.map(OsString::from), false).unwrap_err()
            )
        };
        let both = err(Some(&file), Some("0123456789abcdef0123"));
        assert!(both.contains("both set"), "{both}");
        let missing = dir.path().join("missing");
        let unreadable = err(Some(&missing), None);
        assert!(
            unreadable.starts_with(&format!(
                "--revocation-token-file {}: cannot read the token file",
                missing.display()
            )),
            "{unreadable}"
        );
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(
            err(Some(&file), None),
            format!(
                "--revocation-token-file {}: the token is empty",
                file.display()
            )
        );
        assert_eq!(
            err(None, Some(" \n")),
            "RLS_REVOCATION_TOKEN: the token is empty"
        );
        let unset = revocation_access(None, Some(OsString::new()), false).unwrap();
        assert!(!unset.token_configured(), "empty is unset, like clap's env");
        assert_eq!(
            err(None, Some("short")),
            "RLS_REVOCATION_TOKEN: the token is 5 characters; it must be at least 16"
        );
    }

    #[test]
    fn subcommands_do_not_need_the_server_flags() {
        let args = Args::try_parse_from([
            "ratelimit-service",
            "revoke",
            "--issuer",
            "https://idp",
            "--jti",
            "abc",
            "--until",
            "+1h",
        ])
        .unwrap();
        assert!(matches!(args.command, Some(Command::Revoke { ref jti, .. }) if jti == "abc"));
        assert!(
            Args::try_parse_from(["ratelimit-service"]).is_err(),
            "--config still required"
        );
    }

    #[test]
    fn revoke_takes_the_token_file_after_or_before_the_subcommand() {
        let revoke = ["revoke", "--issuer", "i", "--jti", "j", "--until", "+1h"];
        let token_file = |args: &[&str]| {
            let mut args = Args::try_parse_from(args).unwrap();
            match take_command(&mut args) {
                Some(Command::Revoke {
                    revocation_token_file,
                    ..
                }) => revocation_token_file,
                other => panic!("{other:?}"),
            }
        };
        let mut after = vec!["ratelimit-service"];
        after.extend(revoke);
        after.extend(["--revocation-token-file", "/run/after"]);
        assert_eq!(token_file(&after), Some(PathBuf::from("/run/after")));
        let mut before = vec![
            "ratelimit-service",
            "--revocation-token-file",
            "/run/before",
        ];
        before.extend(revoke);
        assert_eq!(token_file(&before), Some(PathBuf::from("/run/before")));
    }
}
