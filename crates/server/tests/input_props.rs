//! Property tests of the REST API's input readers (docs/api.md, "Errors"):
//! a request body of any bytes and a record of any JSON value come out as
//! the documented 4xx or as the fields asked for, never as a panic, and an
//! error message never repeats an odd field name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use latchkey_app::App;
use latchkey_core::token::TokenPrefix;
use latchkey_server::http::error::ApiError;
use latchkey_server::http::input::{opt_bool, opt_string, record, required_string, JsonObject, BODY_LIMIT};
use latchkey_server::{AppState, ServerConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

/// Any JSON value, nested a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Field names: the ones the API knows, plain ones, and odd ones marked
/// with `Q` (a letter no error message contains) so a leak can be seen.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "api_token",
            "description",
            "active",
            "id",
            "token",
            "name",
            "email",
            "role"
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
        any::<String>().prop_map(|s| format!("Q{s}Q")),
    ]
}

/// A JSON object whose wrapper, when present, often holds a record.
fn body() -> impl Strategy<Value = Map<String, Value>> {
    prop_oneof![
        prop::collection::vec((key(), json()), 0..4).prop_map(|kv| kv.into_iter().collect()),
        prop::collection::vec((key(), json()), 0..6).prop_map(|kv| {
            let mut m = Map::new();
            m.insert("api_token".into(), Value::Object(kv.into_iter().collect()));
            m
        }),
    ]
}

const SETTABLE: &[&str] = &["description", "active"];
const READ_ONLY: &[&str] = &["id", "token"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_of_any_json_are_taken_or_refused_as_documented(b in body()) {
        let expected_top_ok = b.keys().all(|k| k == "api_token");
        let inner = b.get("api_token").cloned();
        match record(b, "api_token", SETTABLE, READ_ONLY) {
            Ok(map) => {
                prop_assert!(expected_top_ok);
                prop_assert!(map.keys().all(|k| SETTABLE.contains(&k.as_str())));
                match inner {
                    None | Some(Value::Null) => prop_assert!(map.is_empty()),
                    Some(Value::Object(m)) => prop_assert_eq!(map, m),
                    Some(other) => prop_assert!(false, "accepted a wrapper that is {:?}", other),
                }
            }
            Err(e) => {
                let status = e.status().as_u16();
                prop_assert!(status == 400 || status == 422, "status {}", status);
                let text = e.body();
                prop_assert!(!text.contains('Q'), "an odd key leaked: {}", text);
                let parsed: Value = serde_json::from_str(&text).expect("the error body is JSON");
                prop_assert!(parsed.get("error").is_some_and(Value::is_string));
                if status == 422 {
                    prop_assert!(matches!(e, ApiError::Invalid(_)));
                }
            }
        }
    }

    #[test]
    fn field_readers_take_their_type_and_refuse_the_rest(k in key(), v in json()) {
        let mut m = Map::new();
        m.insert(k.clone(), v.clone());
        match (&v, opt_string(&m, &k)) {
            (Value::Null, Ok(Some(None))) => {}
            (Value::String(s), Ok(Some(Some(got)))) => prop_assert_eq!(s, &got),
            (Value::Null | Value::String(_), r) => prop_assert!(false, "{:?}", r),
            (_, r) => prop_assert!(r.is_err()),
        }
        match (&v, opt_bool(&m, &k)) {
            (Value::Bool(b), Ok(Some(got))) => prop_assert_eq!(*b, got),
            (Value::Bool(_), r) => prop_assert!(false, "{:?}", r),
            (_, r) => prop_assert!(r.is_err()),
        }
        prop_assert_eq!(required_string(&m, &k).is_ok(), v.is_string());
        // An absent field is absent, whatever else the record holds.
        let absent = format!("{k}x");
        prop_assert_eq!(opt_string(&m, &absent), Ok(None));
        prop_assert_eq!(opt_bool(&m, &absent), Ok(None));
        prop_assert!(required_string(&m, &absent).is_err());
    }
}

/// Request bodies: any bytes, JSON text of any value, and bodies just over
/// and under the limit.
fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        body().prop_map(|m| serde_json::to_vec(&m).unwrap()),
        "[ \t\r\n{}\\[\\]\":,0-9a-z\\\\]{0,64}".prop_map(String::into_bytes),
        (BODY_LIMIT - 2..BODY_LIMIT + 2).prop_map(|n| {
            let mut b = vec![b' '; n];
            b[0] = b'{';
            b[n - 1] = b'}';
            b
        }),
    ]
}

#[test]
fn request_bodies_of_any_bytes_are_read_or_refused_as_documented() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let app = rt.block_on(App::open(&url, TokenPrefix::default())).expect("open");
    let state = AppState::new(Arc::new(app), ServerConfig::default());
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json",
        "Application/JSON; charset=utf-8",
        "text/plain",
        "application/json-patch+json",
    ]));
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&(raw_body(), content_type, any::<bool>()), |(bytes, ct, declare)| {
            let mut req = Request::builder().method("POST").uri("/api/v2/api_tokens");
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            if declare {
                req = req.header("content-length", bytes.len());
            }
            let req = req.body(Body::from(bytes.clone())).unwrap();
            let got = rt.block_on(JsonObject::from_request(req, &state));
            let is_json = ct.is_some_and(|c| {
                c.split(';')
                    .next()
                    .unwrap()
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
            let parsed = serde_json::from_slice::<Value>(&bytes);
            match got {
                Ok(JsonObject(map)) => {
                    prop_assert!(bytes.len() <= BODY_LIMIT);
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        prop_assert!(map.is_empty());
                    } else {
                        prop_assert!(is_json);
                        prop_assert_eq!(Value::Object(map), parsed.unwrap());
                    }
                }
                Err(e) => {
                    let status = e.status().as_u16();
                    if bytes.len() > BODY_LIMIT {
                        prop_assert_eq!(status, 413);
                    } else {
                        prop_assert_eq!(status, 400);
                        prop_assert!(!(is_json && matches!(parsed, Ok(Value::Object(_)))));
                    }
                    let body: Value = serde_json::from_str(&e.body()).expect("the error body is JSON");
                    prop_assert!(body.get("error").is_some_and(Value::is_string));
                }
            }
            Ok(())
        })
        .unwrap();
}
