//! The real binary: refusals in its log (never the credential), and startup errors for unusable
//! tokens.

use super::*;

/// A refused request is logged (warn, with the peer address) and the log holds neither the
/// credential presented nor the configured token.
#[tokio::test]
async fn refused_requests_are_logged_with_the_peer_and_without_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log = dir.path().join("stderr.log");
    let token_arg = token_file.to_str().unwrap();
    let mut child = KillOnDrop(
        binary(&["--revocation-token-file", token_arg], &log)
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();

    const PRESENTED: &str = "attacker-guess-MUST-NOT-BE-LOGGED-7731";
    send(
        http,
        "POST",
        "/revocations",
        &[&bearer(PRESENTED)],
        &revoke_body("x"),
    )
    .await
    .assert_unauthorized("the guess");
    send(
        http,
        "GET",
        "/revocations",
        &[&format!("Authorization: Basic {PRESENTED}")],
        "",
    )
    .await
    .assert_unauthorized("another scheme");
    let ok = send(
        http,
        "POST",
        "/revocations",
        &[&bearer(TOKEN)],
        &revoke_body("y"),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let grpc = addrs["grpc_addr"].as_str().unwrap();
    let mut client = RevocationServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let status = client
        .revoke(with_metadata(
            revoke_message("z"),
            &[grpc_bearer(PRESENTED)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let text = eventually("the refusals in the log", Duration::from_secs(10), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.matches("revocation API request refused").count() >= 3
                && text.contains("token revoked"))
            .then_some(text)
        }
    })
    .await;
    let refusals: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("revocation API request refused"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = refusals
        .iter()
        .map(|r| r["fields"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "wrong bearer token",
            "Authorization is not one `Bearer <token>` header",
            "wrong bearer token",
        ]
    );
    let transports: Vec<&str> = refusals
        .iter()
        .map(|r| r["fields"]["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, ["http", "http", "grpc"]);
    assert_eq!(
        refusals[2]["fields"]["path"],
        "/edgegate.revocation.v1.RevocationService/Revoke"
    );
    for refusal in &refusals {
        assert_eq!(refusal["level"], "WARN", "{refusal}");
        let peer = refusal["fields"]["peer"].as_str().unwrap();
        assert!(peer.starts_with("127.0.0.1:"), "{refusal}");
    }
    assert!(
        !text.contains(PRESENTED),
        "the presented credential is logged:\n{text}"
    );
    assert!(!text.contains(TOKEN), "the token is logged:\n{text}");
    assert!(
        text.contains(
            "revocation writes (HTTP POST /revocations, gRPC Revoke) need the bearer token"
        ),
        "{text}"
    );
}

/// A token file that is empty, too short or unreadable stops the service before it listens,
/// with a message naming the flag; so do a blank RLS_REVOCATION_TOKEN and both at once.
#[test]
fn an_unusable_token_stops_startup_naming_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, TOKEN).unwrap();
    let missing = dir.path().join("missing");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, Option<&str>, String)> = vec![
        (
            vec!["--revocation-token-file".into(), path(&empty)],
            None,
            format!(
                "--revocation-token-file {}: the token is empty",
                path(&empty)
            ),
        ),
        (
            vec!["--revocation-token-file".into(), path(&short)],
            None,
            format!(
                "--revocation-token-file {}: the token is 3 characters; it must be at least 16",
                path(&short)
            ),
        ),
        (
            vec!["--revocation-token-file".into(), path(&missing)],
            None,
            format!(
                "--revocation-token-file {}: cannot read the token file",
                path(&missing)
            ),
        ),
        (
            vec![],
            Some("  "),
            "RLS_REVOCATION_TOKEN: the token is empty".into(),
        ),
        (
            vec!["--revocation-token-file".into(), path(&good)],
            Some(TOKEN),
            "are both set".into(),
        ),
    ];
    for (args, env, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = binary(&args, &log);
        if let Some(token) = env {
            cmd.env("RLS_REVOCATION_TOKEN", token);
        }
        let output = cmd.output().unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(!output.status.success(), "{args:?} started");
        assert!(output.stdout.is_empty(), "{args:?}: it listened");
        assert!(
            stderr.contains(&expected),
            "{args:?}: {expected:?} not in {stderr}"
        );
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
}
