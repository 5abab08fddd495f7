//! The storage layer on a real database, below the HTTP server: a refused
//! change leaves no row, event or change-log entry; every change appends to
//! the change log in its transaction; and a second process's verifier
//! follows the log, resynchronising when it has fallen behind.
//!
//! Each test runs on a fresh database from `latchkey_store::testing`:
//! SQLite by default; `LATCHKEY_TEST_DATABASE=postgres` (with
//! `LATCHKEY_TEST_POSTGRES_URL`, default the local server) runs the same
//! tests on a fresh PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use latchkey_core::{
    account::{NewAccount, Plan, Subdomain},
    allowlist::IpAllowlist,
    audit::Actor,
    id::AccountId,
    rate_limit::RateLimit,
    time::Timestamp,
    token::{NewToken, PlainToken, TokenCreator, TokenHash, TokenPatch, TokenPrefix},
    user::{Email, NewUser, Role},
    verifier::{Denial, Verifier},
    DomainError,
};
use latchkey_store::testing::{test_database_url, DirectArg};
use latchkey_store::{Entity, Follower, Store, StoreError};

const NOW: Timestamp = Timestamp::from_unix(1_790_000_000);

async fn account(store: &Store) -> (AccountId, String) {
    let email = "owner@example.com".to_owned();
    let (account, _) = store
        .create_account(
            NewAccount {
                subdomain: Subdomain::parse("storetest").unwrap(),
                name: "Store test".into(),
                plan: Plan::Team,
                api_token_access: true,
            },
            NewUser {
                name: "Owner".into(),
                email: Email::parse(&email).unwrap(),
                role: Role::Admin,
                verified: true,
                password_hash: None,
            },
            &Actor::operator(),
            NOW,
        )
        .await
        .unwrap();
    (account.id, email)
}

fn new_token() -> (NewToken, PlainToken) {
    let plain = PlainToken::generate(&TokenPrefix::default());
    let new = NewToken {
        hash: plain.hash(),
        visible_token: plain.visible(),
        description: None,
        active: true,
        user_id: None,
        restrictions: Default::default(),
        created_at: None,
        last_used: None,
        legacy: false,
    };
    (new, plain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_import_leaves_no_row_event_or_change() {
    let db = test_database_url().await;
    let store = db.open().await.unwrap();
    let (id, _) = account(&store).await;
    let events = store.audit_chain(id).await.unwrap().len();
    let position = store.latest_change().await.unwrap();
    let (first, _) = new_token();
    let duplicate = first.clone();
    let err = store
        .import_tokens(id, vec![new_token().0, first, duplicate], &Actor::operator(), NOW)
        .await
        .expect_err("a duplicate line refuses the whole import");
    assert!(matches!(err, StoreError::Domain(DomainError::Invalid(_))), "{err:?}");
    assert!(store.tokens(id).await.unwrap().is_empty());
    assert_eq!(store.audit_chain(id).await.unwrap().len(), events);
    assert_eq!(store.latest_change().await.unwrap(), position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_appends_to_the_change_log_and_a_no_op_does_not() {
    let db = test_database_url().await;
    let store = db.open().await.unwrap();
    let (id, _) = account(&store).await;
    let op = Actor::operator();
    let p0 = store.latest_change().await.unwrap();
    let token = store.create_token(id, new_token().0, &op, NOW).await.unwrap();
    let p1 = store.latest_change().await.unwrap();
    assert!(p1 > p0);
    let changes = store.changes_since(p0, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].entity, changes[0].entity_id),
        (Entity::Token, token.id.get())
    );
    // A token's entry carries the token as it stands, column for column
    // what reading it by id gives.
    let stored = store.token_auth(token.id).await.unwrap();
    assert!(stored.is_some());
    assert_eq!(changes[0].token, stored);

    let same = TokenPatch {
        active: Some(true),
        ..TokenPatch::default()
    };
    store.update_token(id, token.id, &same, &op, NOW).await.unwrap();
    assert_eq!(store.latest_change().await.unwrap(), p1, "a no-op writes no change");

    // A restricted token's entry carries every restriction.
    let restrict = TokenPatch {
        expires_at: Some(Some(NOW.plus_secs(3600))),
        allowed_ips: Some(Some(IpAllowlist::parse(&["10.0.0.0/8"]).unwrap())),
        rate_limit: Some(Some(RateLimit::new(100, 60).unwrap())),
        ..TokenPatch::default()
    };
    store.update_token(id, token.id, &restrict, &op, NOW).await.unwrap();
    let changes = store.changes_since(p1, 100).await.unwrap();
    let carried = changes[0].token.clone().unwrap();
    assert!(carried.restrictions.allowed_ips.is_some() && carried.restrictions.rate_limit.is_some());
    assert_eq!(Some(carried), store.token_auth(token.id).await.unwrap());
    let p1 = store.latest_change().await.unwrap();

    let off = TokenPatch {
        active: Some(false),
        ..TokenPatch::default()
    };
    store.update_token(id, token.id, &off, &op, NOW).await.unwrap();
    store.delete_token(id, token.id, &op, NOW).await.unwrap();
    let changes = store.changes_since(p1, 100).await.unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes
        .iter()
        .all(|c| c.entity == Entity::Token && c.entity_id == token.id.get()));
    // Both entries are read after the deletion: the token is gone from each.
    assert!(changes.iter().all(|c| c.token.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_verifier_follows_the_change_log() {
    let db = test_database_url().await;
    let writer = db.open().await.unwrap();
    let (id, email) = account(&writer).await;
    let reader = db.open().await.unwrap();
    let verifier = Arc::new(Verifier::new());
    let follower = Follower::new(reader, verifier.clone());
    follower.resync().await.unwrap();
    let op = Actor::operator();

    let (new, plain) = new_token();
    let token = writer.create_token(id, new, &op, NOW).await.unwrap();
    let hash = TokenHash::of(plain.expose());
    assert_eq!(verifier.verify(&email, &hash, NOW).err(), Some(Denial::UnknownToken));
    assert!(follower.catch_up().await.unwrap() >= 1);
    assert!(verifier.verify(&email, &hash, NOW).is_ok());

    let off = TokenPatch {
        active: Some(false),
        ..TokenPatch::default()
    };
    writer.update_token(id, token.id, &off, &op, NOW).await.unwrap();
    follower.catch_up().await.unwrap();
    assert_eq!(verifier.verify(&email, &hash, NOW).err(), Some(Denial::TokenInactive));
    writer.delete_token(id, token.id, &op, NOW).await.unwrap();
    follower.catch_up().await.unwrap();
    assert_eq!(verifier.verify(&email, &hash, NOW).err(), Some(Denial::UnknownToken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_process_catches_up_from_its_first_load_instead_of_loading_again() {
    let db = test_database_url().await;
    let writer = db.open().await.unwrap();
    let (id, email) = account(&writer).await;
    let verifier = Arc::new(Verifier::new());
    let follower = Arc::new(Follower::new(db.open().await.unwrap(), verifier.clone()));
    follower.resync().await.unwrap();
    // Committed after the load and before the follower listens (PostgreSQL)
    // or first polls (SQLite): the change log since the load holds it.
    let (new, plain) = new_token();
    writer.create_token(id, new, &Actor::operator(), NOW).await.unwrap();
    let hash = TokenHash::of(plain.expose());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(follower.clone().run(
        std::time::Duration::from_millis(25),
        std::time::Duration::from_secs(5),
        async {
            let _ = stopped.await;
        },
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while verifier.verify(&email, &hash, NOW).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the change never reached the follower"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Listening or polling took the change from the log: one load in all,
    // not counted as a resynchronisation.
    assert_eq!((follower.loads(), follower.resyncs()), (1, 0));
    stop.send(()).unwrap();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_fell_behind_the_pruned_log_resynchronises() {
    let db = test_database_url().await;
    let writer = db.open().await.unwrap();
    let (id, email) = account(&writer).await;
    let reader = db.open().await.unwrap();
    let verifier = Arc::new(Verifier::new());
    let follower = Follower::new(reader, verifier.clone());
    follower.resync().await.unwrap();
    let op = Actor::operator();

    let (a, plain_a) = new_token();
    writer.create_token(id, a, &op, NOW).await.unwrap();
    // The log entries this follower has not read are pruned away...
    writer.prune_changes(NOW.plus_secs(60)).await.unwrap();
    // ...and a newer change arrives after the gap.
    let (b, plain_b) = new_token();
    writer.create_token(id, b, &op, NOW.plus_secs(120)).await.unwrap();
    follower.catch_up().await.unwrap();
    for plain in [&plain_a, &plain_b] {
        assert!(
            verifier.verify(&email, &TokenHash::of(plain.expose()), NOW).is_ok(),
            "a change lost to pruning was recovered by a full resync"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_last_audit_hash_fails_the_next_audited_write_and_writes_nothing() {
    let db = test_database_url().await;
    let store = db.open().await.unwrap();
    let (id, _) = account(&store).await;
    let events = store.audit_chain(id).await.unwrap().len();
    let position = store.latest_change().await.unwrap();
    // The newest event's hash, cut short behind latchkey's back.
    let touched = db
        .direct()
        .await
        .execute(
            "UPDATE audit_events SET hash = $1 WHERE id = (SELECT MAX(id) FROM audit_events WHERE account_id = $2)",
            &[DirectArg::Bytes(vec![0xab; 5]), DirectArg::Int(id.get())],
        )
        .await;
    assert_eq!(touched, 1);

    let err = store
        .create_token(id, new_token().0, &Actor::operator(), NOW)
        .await
        .expect_err("a write cannot chain onto a malformed hash");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(store.tokens(id).await.unwrap().is_empty());
    assert_eq!(store.audit_chain(id).await.unwrap().len(), events);
    assert_eq!(store.latest_change().await.unwrap(), position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_creators_name_each_creator_in_one_read() {
    let db = test_database_url().await;
    let store = db.open().await.unwrap();
    let (account_id, email) = account(&store).await;
    let (owner, _) = store.user_credentials(account_id, &email).await.unwrap().unwrap();
    let owner = owner.id;
    let (by_operator, _) = new_token();
    let (mut by_owner, _) = new_token();
    by_owner.user_id = Some(owner);
    store
        .create_token(account_id, by_operator, &Actor::operator(), NOW)
        .await
        .unwrap();
    store
        .create_token(account_id, by_owner, &Actor::operator(), NOW)
        .await
        .unwrap();

    let listed = store.tokens_with_creators(account_id).await.unwrap();
    let creators: Vec<TokenCreator> = listed.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        creators,
        vec![
            TokenCreator::User {
                name: "Owner".into(),
                deleted: false
            },
            TokenCreator::Operator,
        ]
    );
}
