//! Rules that must hold under concurrent load: the token limit is exact,
//! and once a deactivation is acknowledged no request gets through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_creates_with_room_for_255_make_exactly_255_tokens() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await; // the account now holds 1 token
    let url = t.url("/api/v2/api_tokens");
    let started = Instant::now();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (client, url, auth) = (t.client.clone(), url.clone(), auth.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("authorization", auth)
                    .json(&json!({"api_token": {"description": format!("racer {i}")}}))
                    .send()
                    .await
                    .expect("request");
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                (status, body)
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => created += 1,
            422 => {
                assert!(body.contains("TokenLimitReached"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    println!("300 concurrent creates took {:?}", started.elapsed());
    assert_eq!(created, 255);
    assert_eq!(refused, 45);
    let list = t.get("/api/v2/api_tokens", &auth).await.json();
    assert_eq!(list["count"], 256);
    assert_eq!(list["api_tokens"].as_array().unwrap().len(), 256);
    assert_eq!(t.store().await.tokens(a.id).await.unwrap().len(), 256);
    // One create event per token, and the chain survived the race.
    let creates = t
        .audit(a.id)
        .await
        .iter()
        .filter(|e| e.action.as_str() == "create" && e.source_type.as_str() == "api_token")
        .count();
    assert_eq!(creates, 256);
    assert!(t.audit_chain_intact(a.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_started_after_a_deactivation_is_acknowledged_gets_through() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let victim = t.token(&a).await;
    let victim_auth = basic(&a.admin.email, &victim.plain);
    let url = t.url("/api/v2/users/me");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (client, url, auth, stop) = (t.client.clone(), url.clone(), victim_auth.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = client
                        .get(&url)
                        .header("authorization", &auth)
                        .send()
                        .await
                        .expect("request")
                        .status()
                        .as_u16();
                    seen.push((started, status));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = t
        .put(
            &format!("/api/v2/api_tokens/{}", victim.id),
            &admin,
            &json!({"api_token": {"active": false}}),
        )
        .await;
    let acknowledged = Instant::now();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut before_ok = 0;
    let mut after = 0;
    for w in workers {
        for (started, status) in w.await.unwrap() {
            if started > acknowledged {
                assert_eq!(
                    status,
                    401,
                    "a request started {:?} after the acknowledgement got {status}",
                    started - acknowledged
                );
                after += 1;
            } else if status == 200 {
                before_ok += 1;
            }
        }
    }
    println!("{before_ok} requests succeeded before the deactivation, {after} were refused after it");
    assert!(before_ok > 10, "the load did not run before the deactivation");
    assert!(after > 10, "the load did not run after the deactivation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_exactly_when_two_nodes_race_on_one_database() {
    let one = TestApp::spawn().await;
    let two = one.spawn_node(|_| {}).await;
    let a = one.account().await;
    let auth = one.admin_auth(&a).await;
    // The second node learns of the account and token from the change log.
    let mut ready = false;
    for _ in 0..200 {
        if two.me_status(&auth).await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "the second node never saw the token");
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let node = if i % 2 == 0 { &one } else { &two };
            let (client, url, auth) = (node.client.clone(), node.url("/api/v2/api_tokens"), auth.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("authorization", auth)
                    .send()
                    .await
                    .expect("request");
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => created += 1,
            422 if body.contains("TokenLimitReached") => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 255);
    assert_eq!(one.store().await.tokens(a.id).await.unwrap().len(), 256);
    assert!(one.audit_chain_intact(a.id).await);
}
