//! A token never reaches a log line (docs/api.md, "The token format"): the real binary,
//! logging at its most verbose in both formats, is fed every kind of
//! request that carries a token, and its whole output is searched for it.

use base64::Engine as _;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_logs_at_any_level_or_format() {
    for format in ["text", "json"] {
        let db = test_database_url().await;
        let (subdomain, email, admin_token) = db.cli_account("enterprise").await;
        let server =
            ServeProcess::start_with_env(&db.url, &["--log-format", format], &[("LATCHKEY_LOG", "trace")]).await;
        let client = client();
        let admin = basic(&email, &admin_token);
        let mut secrets = vec![admin_token.clone()];

        let r = client
            .post(server.url("/api/v2/api_tokens"))
            .header("authorization", &admin)
            .json(&json!({"api_token": {"description": "fresh"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        let fresh = v["api_token"]["token"].as_str().unwrap().to_owned();
        let fresh_id = v["api_token"]["id"].as_i64().unwrap();
        secrets.push(fresh.clone());
        let unknown = unknown_token();
        secrets.push(unknown.clone());
        let mistyped = with_bad_checksum(&fresh);
        secrets.push(mistyped.clone());

        let me = server.url("/api/v2/users/me");
        let attempts = [
            basic(&email, &fresh),
            basic(&email, &unknown),
            basic(&email, &mistyped),
            basic("nobody@example.com", &fresh),
            basic_raw(&format!("{email}:{fresh}")),
            format!("Bearer {fresh}"),
            format!("Bearer {mistyped}"),
            format!("Token {fresh}"),
        ];
        for auth in &attempts {
            client.get(&me).header("authorization", auth).send().await.unwrap();
        }
        // Tokens where no token belongs: queries, bodies, field names, paths.
        let garbage = [
            (reqwest::Method::GET, format!("/api/v2/users?page[after]={fresh}"), None),
            (reqwest::Method::GET, format!("/api/v2/api_tokens/{fresh}"), None),
            (reqwest::Method::GET, format!("/nowhere/{fresh}"), None),
            (
                reqwest::Method::PUT,
                format!("/api/v2/api_tokens/{fresh_id}"),
                Some(json!({"api_token": {"description": format!("{fresh}\u{7}")}})),
            ),
            (
                reqwest::Method::POST,
                "/api/v2/api_tokens".to_owned(),
                Some(json!({"api_token": {(fresh.clone()): 1}})),
            ),
            (
                reqwest::Method::POST,
                "/api/v2/users".to_owned(),
                Some(json!({"user": {"name": fresh, "email": format!("not an email {fresh}")}})),
            ),
        ];
        for (method, path, body) in garbage {
            let mut req = client
                .request(method, server.url(&path))
                .header("authorization", &admin);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let status = req.send().await.unwrap().status();
            assert!(status.is_client_error(), "{path}: {status}");
        }
        // Malformed JSON that quotes a token.
        let r = client
            .post(server.url("/api/v2/api_tokens"))
            .header("authorization", &admin)
            .header("content-type", "application/json")
            .body(format!("{{\"api_token\": {{\"description\": \"{fresh}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = client
            .put(server.url(&format!("/api/v2/api_tokens/{fresh_id}")))
            .header("authorization", &admin)
            .json(&json!({"api_token": {"active": false}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (code, logged) = server.terminate_with_output().await;
        assert_eq!(code, 0, "{logged}");
        assert!(
            logged.lines().count() > 20,
            "the server logged little at trace level: {logged}"
        );

        let out_cli = latchkey_command(&db.url)
            .args(["token", "list", "--account", &subdomain])
            .env("LATCHKEY_LOG", "trace")
            .output()
            .await
            .unwrap();
        let mut everything = String::from_utf8_lossy(&out_cli.stdout).into_owned();
        everything.push_str(&String::from_utf8_lossy(&out_cli.stderr));

        everything.push_str(&logged);
        for s in &secrets {
            let random = &s[3..s.len() - 6];
            let leaks: Vec<&str> = everything.lines().filter(|l| l.contains(random)).collect();
            assert!(
                leaks.is_empty(),
                "{format} logs contain a token {s}:\n{}",
                leaks.join("\n")
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{s}"));
            assert!(
                !everything.contains(&encoded[..40]),
                "{format} logs contain credentials"
            );
        }
    }
}
