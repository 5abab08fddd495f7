//! Per-token usage by hour (README.md, "Usage"): counted in memory on each
//! request, allowed and refused by reason, added to the stored hourly rows
//! with each flush, and listed by `GET /api/v2/api_tokens/{id}/usage`.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_allowed_and_refused_requests_by_reason_per_hour() {
    let t = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = t
        .api_create_token_with(
            &admin,
            json!({"scopes": ["users:read"], "allowed_ips": ["192.0.2.0/24"]}),
        )
        .await;
    let auth = basic(&a.admin.email, &token);
    let send = |path: &'static str, ip: &'static str| {
        let req = t
            .client
            .request(Method::GET, t.url(path))
            .header("authorization", auth.clone())
            .header("x-forwarded-for", ip);
        async move { req.send().await.expect("request").status().as_u16() }
    };
    for _ in 0..3 {
        assert_eq!(send("/api/v2/users/me", "192.0.2.1").await, 200);
    }
    assert_eq!(send("/api/v2/users/me", "198.51.100.1").await, 401);
    assert_eq!(send("/api/v2/api_tokens", "192.0.2.1").await, 403);
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(send("/api/v2/users/me", "192.0.2.1").await, 401);
    t.app.flush_usage().await.expect("flush");
    // A second batch adds to the same hour.
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{id}"),
            &admin,
            &json!({"api_token": {"active": true}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(send("/api/v2/users/me", "192.0.2.1").await, 200);
    t.app.flush_usage().await.expect("flush");

    let r = t.get(&format!("/api/v2/api_tokens/{id}/usage?days=1"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = r.json()["usage"].clone();
    assert_eq!(usage.as_array().expect("hours").len(), 1, "{usage}");
    assert_eq!(usage[0]["allowed"], 4);
    assert_eq!(
        usage[0]["denied"],
        json!({"rate_limited": 0, "ip_not_allowed": 1, "expired": 0, "inactive": 1, "scope": 1})
    );
    let hour = usage[0]["hour"].as_str().expect("hour");
    assert!(hour.ends_with(":00:00Z"), "{hour}");
    // The default is 30 days; bad values are 400; another account's token is 404.
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{id}/usage"), &admin).await.status,
        200
    );
    for bad in ["0", "91", "x", "1.5", "-1"] {
        let r = t
            .get(&format!("/api/v2/api_tokens/{id}/usage?days={bad}"), &admin)
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let other = t.account().await;
    let other_admin = t.admin_auth(&other).await;
    assert_eq!(
        t.get(&format!("/api/v2/api_tokens/{id}/usage"), &other_admin)
            .await
            .status,
        404
    );
}
