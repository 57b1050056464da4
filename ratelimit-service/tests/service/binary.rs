//! The real `ratelimit-service` binary: `--validate`, bound addresses, SIGTERM, and the
//! revocation CLI subcommands.

use crate::prelude::*;

#[test]
fn binary_validates_configs_and_prints_bound_addresses() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_ratelimit-service");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let ok = Command::new(bin)
        .arg("--validate")
        .arg(fixtures.join("valid"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "OK\n");
    let bad_file = fixtures.join("invalid/bad_unit.yaml");
    let bad = Command::new(bin)
        .arg("--validate")
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        format!(
            "{}: descriptors[0].rate_limit.unit: unknown unit \"fortnight\" (expected second, minute, hour, day, week, month or year)\n",
            bad_file.display()
        )
    );

    let mut child = Command::new(bin)
        .args([
            "--store",
            "memory",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(fixtures.join("valid"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let grpc: SocketAddr = addrs["grpc_addr"].as_str().unwrap().parse().unwrap();
    let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();
    assert_ne!(grpc.port(), 0);
    assert_ne!(http.port(), 0);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

/// The real binary with real Redis: the `revoke` and `list-revocations` subcommands against
/// its gRPC port, and the HTTP endpoint.
#[tokio::test]
async fn binary_serves_revocations_to_the_cli_and_over_http() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let redis = redis_fixture::RedisServer::start().unwrap();
    let bin = env!("CARGO_BIN_EXE_ratelimit-service");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    /// Kills the service if the test fails before its graceful stop.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(["--store", "redis", "--redis-url", &redis.url()])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--config")
            .arg(fixtures.join("valid"))
            .env("RLS_REVOCATION_TOKEN", REVOCATION_TOKEN)
            .env_remove("RLS_REVOCATION_TOKEN_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let grpc = addrs["grpc_addr"].as_str().unwrap().to_owned();
    let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();

    // The CLI with the given token variable (none by default) and nothing else inherited.
    let cli_with = |args: &[&str], token_env: Option<&str>| {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_remove("RLS_REVOCATION_TOKEN")
            .env_remove("RLS_REVOCATION_TOKEN_FILE");
        if let Some(token) = token_env {
            cmd.env("RLS_REVOCATION_TOKEN", token);
        }
        let output = cmd.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let cli = |args: &[&str]| cli_with(args, None);
    let revoke_args = |jti: &'static str, until: &'static str| {
        vec![
            "revoke".to_owned(),
            "--grpc-addr".to_owned(),
            grpc.clone(),
            "--issuer".to_owned(),
            "https://idp".to_owned(),
            "--jti".to_owned(),
            jti.to_owned(),
            "--until".to_owned(),
            until.to_owned(),
        ]
    };

    // Without the token the service refuses, and the CLI says what to pass.
    let args = revoke_args("no-token", "+1h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli(&args);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("revoke failed: Unauthenticated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--revocation-token-file or RLS_REVOCATION_TOKEN"),
        "{stderr}"
    );
    // A wrong one is refused too (and not echoed).
    let (ok, _, stderr) = cli_with(&args, Some("a-wrong-token-of-enough-length"));
    assert!(!ok);
    assert!(
        stderr.contains("revoke failed: Unauthenticated"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-wrong-token"), "{stderr}");

    // With the token from the environment.
    let before = unix_now();
    let args = revoke_args("cli-1", "+1h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli_with(&args, Some(REVOCATION_TOKEN));
    let after = unix_now();
    assert!(ok, "{stderr}");
    let version = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["version"]
        .as_u64()
        .unwrap();
    assert!(version > 0);

    let until = unix_now() + 600;
    let (status, body) = http_request(
        http,
        "POST",
        "/revocations",
        &format!(r#"{{"issuer":"https://idp","jti":"http-1","expires_at":{until}}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (ok, stdout, stderr) = cli(&[
        "list-revocations",
        "--grpc-addr",
        &grpc,
        "--since",
        &version.to_string(),
    ]);
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["full"], false);
    assert_eq!(listed["revocations"][0]["jti"], "http-1");
    assert_eq!(listed["revocations"][0]["expires_at"], until);
    assert_eq!(listed["revocations"].as_array().unwrap().len(), 1);

    let (status, body) = http_get(http, "/revocations").await;
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let jtis: Vec<&str> = all["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jti"].as_str().unwrap())
        .collect();
    assert_eq!(jtis, ["cli-1", "http-1"]);
    let cli_until = all["revocations"][0]["expires_at"].as_u64().unwrap();
    assert!(
        (before + 3600..=after + 3600).contains(&cli_until),
        "+1h between {before} and {after} -> {cli_until}"
    );

    // With the token from --revocation-token-file (a file's final newline is ignored).
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{REVOCATION_TOKEN}\n")).unwrap();
    let mut args = revoke_args("cli-2", "+1h");
    args.extend([
        "--revocation-token-file".to_owned(),
        token_file.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "{stderr}");
    let version_2 = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["version"]
        .as_u64()
        .unwrap();
    assert!(version_2 > version);
    // An unusable token file stops the CLI before it connects, naming the flag.
    std::fs::write(&token_file, "short\n").unwrap();
    let (ok, _, stderr) = cli(&args);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "--revocation-token-file {}: the token is 5 characters",
            token_file.display()
        )),
        "{stderr}"
    );

    // Past the token, the request is validated as before.
    let args = revoke_args("x", "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = cli_with(&args, Some(REVOCATION_TOKEN));
    assert!(!ok);
    assert!(
        stderr.contains(
            "revoke failed: InvalidArgument: revocation expires_at 1 is not in the future"
        ),
        "{stderr}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.0.wait().unwrap().success(),
        "graceful exit on SIGTERM"
    );
}
