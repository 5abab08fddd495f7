//! `/api/v2/audit_logs` (docs/api.md, "Audit log"): an account's audit events for its admins
//! on Enterprise plans, filtered and cursor-paged, one by id, or all of them
//! streamed as CSV or JSON Lines in constant memory.

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{stream, StreamExt};
use latchkey_core::audit::AuditEvent;
use latchkey_core::audit_query::AuditQuery;
use latchkey_core::id::{AuditEventId, UserId};
use latchkey_core::time::rfc3339;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Admin;
use super::error::{json_response, ApiError, ApiResult};
use super::input::{record_id, BaseUrl};
use super::paging::{Links, Meta, PageParams, PageQuery};
use crate::state::AppState;

/// The audit-log routes. `/export` is a static segment, so it wins over
/// `/{id}` whatever the order.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/audit_logs", get(list))
        .route("/api/v2/audit_logs/export", get(export))
        .route("/api/v2/audit_logs/{id}", get(show))
}

/// Admins only (the extractor answers 403 `Forbidden` to agents and end
/// users); then the plan decides.
fn require_plan(admin: &Admin) -> Result<(), ApiError> {
    if admin.user.identity.account.plan.can_view_audit_log() {
        Ok(())
    } else {
        Err(ApiError::AuditLogUnavailable)
    }
}

fn parse_query(raw: Option<&str>) -> Result<AuditQuery, ApiError> {
    let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
    AuditQuery::from_api_pairs(pairs).map_err(|e| ApiError::bad_request(e.0))
}

pub fn audit_log_url(base: &BaseUrl, id: AuditEventId) -> String {
    base.join(&format!("/api/v2/audit_logs/{id}.json"))
}

/// An audit event record, with the fields docs/api.md lists, in their
/// order (docs/api.md, "Audit log").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 12, "url": "https://acme.example.com/api/v2/audit_logs/12.json",
    "action": "update", "action_label": "Updated", "actor_id": 3, "actor_type": "user",
    "actor_name": "Jo Doe", "source_id": 7, "source_type": "api_token",
    "source_label": "API token: Jira sync",
    "change_description": "description changed from \"Jira\" to \"Jira sync\"",
    "ip_address": "203.0.113.9", "created_at": "2026-11-27T09:14:57Z"
}))]
pub struct AuditLogView {
    #[schema(value_type = i64, minimum = 1)]
    pub id: AuditEventId,
    /// Absolute; ends in `.json`.
    pub url: String,
    /// `create`, `update`, `deactivate`, `reactivate`, `rotate`, `destroy`,
    /// or `prune` (a checkpoint of audit retention, by `system`).
    pub action: &'static str,
    /// `Created`, `Updated`, `Deactivated`, `Reactivated`, `Rotated`,
    /// `Deleted` or `Pruned`.
    pub action_label: &'static str,
    /// The user; `null` for the operator (CLI) and the system.
    #[schema(required = true, value_type = Option<i64>)]
    pub actor_id: Option<UserId>,
    /// `user`, `operator` or `system`.
    pub actor_type: &'static str,
    pub actor_name: String,
    /// The id of the changed record.
    pub source_id: i64,
    /// `api_token`, `account_setting`, `account` or `user`.
    pub source_type: &'static str,
    pub source_label: String,
    /// `""` for create, deactivate, reactivate and destroy; for updates one
    /// clause per field, `; `-joined; for prune, what retention removed and
    /// the hash the chain continues from.
    pub change_description: String,
    /// The client's address; `null` for the CLI and the system.
    #[schema(required = true)]
    pub ip_address: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// `{"audit_log": AuditEvent}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogResponse {
    pub audit_log: AuditLogView,
}

/// `{"audit_logs": [AuditEvent], "meta", "links"}`: one page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogList {
    pub audit_logs: Vec<AuditLogView>,
    pub meta: Meta,
    pub links: Links,
}

/// The filters of the listing and the export as the OpenAPI document
/// describes them; requests are read by [`AuditQuery::from_api_pairs`],
/// which gives the exact 400s of docs/api.md.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditFilters {
    /// `api_token` (alias `apitoken`), `account_setting`, `account` or `user`.
    #[param(rename = "filter[source_type]", inline, example = "api_token")]
    source_type: Option<SourceTypeName>,
    /// Requires `filter[source_type]`.
    #[param(rename = "filter[source_id]", minimum = 1, example = 7)]
    source_id: Option<i64>,
    #[param(rename = "filter[actor_id]", minimum = 1, example = 3)]
    actor_id: Option<i64>,
    /// An IPv4 or IPv6 address.
    #[param(rename = "filter[ip_address]", example = "203.0.113.9")]
    ip_address: Option<String>,
    /// One of the actions.
    #[param(rename = "filter[action]", inline, example = "update")]
    action: Option<ActionName>,
    /// Given exactly twice: start, then end (inclusive, RFC 3339).
    #[param(rename = "filter[created_at][]", min_items = 2, max_items = 2,
        example = json!(["2026-11-01T00:00:00Z", "2026-11-30T23:59:59Z"]))]
    created_at: Option<Vec<String>>,
    /// `-created_at` (default, newest first) or `created_at`.
    #[param(rename = "sort", inline, example = "-created_at")]
    sort: Option<SortName>,
}

/// The values of `filter[source_type]`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceTypeName {
    ApiToken,
    Apitoken,
    AccountSetting,
    Account,
    User,
}

/// The values of `filter[action]`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    Create,
    Update,
    Deactivate,
    Reactivate,
    Rotate,
    Destroy,
    Prune,
}

/// The values of `sort`.
#[derive(Debug, Serialize, ToSchema)]
pub enum SortName {
    #[serde(rename = "-created_at")]
    NewestFirst,
    #[serde(rename = "created_at")]
    OldestFirst,
}

/// The values of `format`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    Csv,
    Jsonl,
}

/// The export's `format`, as the OpenAPI document describes it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExportFormat {
    /// `csv` or `jsonl`, exactly once.
    #[param(inline, example = "csv")]
    format: FormatName,
}

/// One record, with the fields docs/api.md lists, in their order.
pub fn record(base: &BaseUrl, e: &AuditEvent) -> AuditLogView {
    AuditLogView {
        id: e.id,
        url: audit_log_url(base, e.id),
        action: e.action.as_str(),
        action_label: e.action.label(),
        actor_id: e.actor_id,
        actor_type: e.actor_type.as_str(),
        actor_name: e.actor_name.clone(),
        source_id: e.source_id,
        source_type: e.source_type.as_str(),
        source_label: e.source_label.clone(),
        change_description: e.change_description.clone(),
        ip_address: e.ip_address.clone(),
        created_at: rfc3339(e.created_at),
    }
}

/// The account's audit events, newest first by default, filtered and
/// cursor-paged. Admins of accounts on Enterprise plans.
#[utoipa::path(get, path = "/api/v2/audit_logs", operation_id = "listAuditLogs", tag = "Audit log", params(AuditFilters, PageParams),
    responses((status = 200, description = "One page of events", body = AuditLogList), super::openapi::Auth,
        super::openapi::ForbiddenOrPlan, super::openapi::BadQuery))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_plan(&admin)?;
    let query = parse_query(raw.as_deref())?;
    let page = PageQuery::parse(raw.as_deref())?;
    let (events, has_more) = state
        .app
        .audit_page(&admin.access, &query, page.after, page.before, page.size)
        .await?;
    let (meta, links) = page.meta_and_links(
        &base,
        "/api/v2/audit_logs.json",
        &query.api_pairs(),
        events.first().map(|e| e.id),
        events.last().map(|e| e.id),
        has_more,
    );
    let audit_logs = events.iter().map(|e| record(&base, e)).collect();
    Ok(json_response(
        StatusCode::OK,
        &AuditLogList {
            audit_logs,
            meta,
            links,
        },
    ))
}

/// One audit event of the account. Admins of accounts on Enterprise plans.
#[utoipa::path(get, path = "/api/v2/audit_logs/{id}", operation_id = "getAuditLog", tag = "Audit log", params(super::openapi::IdParam),
    responses((status = 200, description = "The event", body = AuditLogResponse), super::openapi::Auth,
        super::openapi::ForbiddenOrPlan, super::openapi::NotFound))]
pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<AuditEventId>, PathRejection>,
) -> ApiResult<Response> {
    require_plan(&admin)?;
    let id = record_id(id)?;
    let event = state
        .app
        .audit_event(&admin.access, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &AuditLogResponse {
            audit_log: record(&base, &event),
        },
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
}

impl Format {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut found = None;
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if key == "format" {
                if found.is_some() {
                    return Err(ApiError::bad_request("format is given more than once."));
                }
                found = Some(match value.as_ref() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    _ => return Err(ApiError::bad_request("format must be csv or jsonl.")),
                });
            }
        }
        found.ok_or_else(|| ApiError::bad_request("format must be csv or jsonl."))
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// The CSV columns: the record's fields, in their order.
const CSV_HEADER: [&str; 13] = [
    "id",
    "url",
    "action",
    "action_label",
    "actor_id",
    "actor_type",
    "actor_name",
    "source_id",
    "source_type",
    "source_label",
    "change_description",
    "ip_address",
    "created_at",
];

/// A CSV cell a spreadsheet would not run as a formula: one starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, as
/// OWASP advises against CSV injection (docs/api.md, "Audit log"). Only the
/// CSV export is altered; the JSON Lines export stays faithful.
fn neutralized(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// One batch of events as CSV rows (quoted by the `csv` crate wherever a
/// field holds a comma, a quote or a line break; neutralised against
/// formulas by [`neutralized`]).
fn csv_rows(base: &BaseUrl, events: &[AuditEvent], header: bool) -> Result<Bytes, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(events.len() * 256));
    if header {
        w.write_record(CSV_HEADER)?;
    }
    let opt = |v: Option<UserId>| v.map(|n| n.to_string()).unwrap_or_default();
    for e in events {
        let (id, url, actor_id) = (e.id.to_string(), audit_log_url(base, e.id), opt(e.actor_id));
        let (source_id, created_at) = (e.source_id.to_string(), rfc3339(e.created_at));
        let cells = [
            id.as_str(),
            &url,
            e.action.as_str(),
            e.action.label(),
            &actor_id,
            e.actor_type.as_str(),
            &e.actor_name,
            &source_id,
            e.source_type.as_str(),
            &e.source_label,
            &e.change_description,
            e.ip_address.as_deref().unwrap_or(""),
            &created_at,
        ]
        .map(neutralized);
        w.write_record(cells.iter().map(|c| c.as_bytes()))?;
    }
    w.into_inner().map(Bytes::from).map_err(|e| e.into_error().into())
}

fn jsonl_rows(base: &BaseUrl, events: &[AuditEvent]) -> Bytes {
    let mut out = Vec::with_capacity(events.len() * 320);
    for e in events {
        // A record of strings and numbers: serialising it cannot fail.
        if serde_json::to_writer(&mut out, &record(base, e)).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// Rows of the export as `latchkey audit export` writes them: the same CSV
/// (with its header row when `first`) or JSON lines as
/// `GET /api/v2/audit_logs/export`, each `url` built on `base`.
pub fn export_rows(jsonl: bool, base: &str, events: &[AuditEvent], first: bool) -> Result<Bytes, std::io::Error> {
    let format = if jsonl { Format::Jsonl } else { Format::Csv };
    encode(format, &BaseUrl(base.trim_end_matches('/').to_owned()), events, first)
}

fn encode(format: Format, base: &BaseUrl, events: &[AuditEvent], first: bool) -> Result<Bytes, std::io::Error> {
    match format {
        Format::Csv => csv_rows(base, events, first).map_err(std::io::Error::other),
        Format::Jsonl => Ok(jsonl_rows(base, events)),
    }
}

/// Streams every matching event, one batch of rows in memory at a time.
/// Admins of accounts on Enterprise plans.
/// The first batch is read before the response starts, so a database that
/// fails up front still gets a proper 500; a failure later cuts the body
/// short (the client sees an incomplete chunked response, never a
/// truncated file that looks whole).
#[utoipa::path(get, path = "/api/v2/audit_logs/export", operation_id = "exportAuditLogs", tag = "Audit log", params(ExportFormat, AuditFilters),
    responses((status = 200, description = "Every matching event, streamed; `Content-Disposition: attachment`",
        content((String = "text/csv"), (AuditLogView = "application/jsonl")),
        headers(("Content-Disposition" = String, description = "attachment; filename=\"audit-log-{subdomain}.{csv|jsonl}\""))),
        super::openapi::Auth, super::openapi::ForbiddenOrPlan, super::openapi::BadQuery))]
pub async fn export(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require_plan(&admin)?;
    let query = parse_query(raw.as_deref())?;
    let format = Format::parse(raw.as_deref())?;
    let mut batches = state.app.audit_export(&admin.access, &query);
    let first = batches.next().await.transpose()?.unwrap_or_default();
    let head = encode(format, &base, &first, true).map_err(|e| ApiError::Internal(e.to_string()))?;
    let rest = batches.map(move |batch| {
        let events = batch.map_err(|e| {
            tracing::error!(cause = %e, "audit export failed mid-stream");
            std::io::Error::other("database error")
        })?;
        encode(format, &base, &events, false)
    });
    let body = Body::from_stream(stream::once(async { Ok::<_, std::io::Error>(head) }).chain(rest));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    let subdomain = &admin.user.identity.account.subdomain;
    let disposition = format!("attachment; filename=\"audit-log-{subdomain}.{}\"", format.extension());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::audit::{Action, ActorType, SourceType};
    use latchkey_core::id::AccountId;
    use latchkey_core::time::Timestamp;

    fn event(desc: &str) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::new(5),
            account_id: AccountId::new(1),
            action: Action::Update,
            actor_type: ActorType::Operator,
            actor_id: None,
            actor_name: "Operator".into(),
            source_type: SourceType::ApiToken,
            source_id: 7,
            source_label: "API token: a, \"b\"".into(),
            change_description: desc.into(),
            ip_address: None,
            created_at: Timestamp::from_unix(1_795_770_897),
        }
    }

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks() {
        let base = BaseUrl("http://x".into());
        let out = csv_rows(&base, &[event("line one,\n\"two\"")], true).expect("csv");
        let text = String::from_utf8(out.to_vec()).expect("utf-8");
        assert_eq!(
            text,
            "id,url,action,action_label,actor_id,actor_type,actor_name,source_id,source_type,source_label,change_description,ip_address,created_at\n\
             5,http://x/api/v2/audit_logs/5.json,update,Updated,,operator,Operator,7,api_token,\"API token: a, \"\"b\"\"\",\"line one,\n\"\"two\"\"\",,2026-11-27T09:14:57Z\n"
        );
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote() {
        for (cell, out) in [
            (
                "=HYPERLINK(\"http://x.test\",\"y\")",
                "'=HYPERLINK(\"http://x.test\",\"y\")",
            ),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("a=b", "a=b"),
            ("", ""),
            ("Jane", "Jane"),
        ] {
            assert_eq!(neutralized(cell), out, "{cell:?}");
        }
    }

    #[test]
    fn records_have_the_spec_fields_in_order() {
        let base = BaseUrl("http://x".into());
        let v = serde_json::to_value(record(&base, &event(""))).expect("json");
        let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, CSV_HEADER);
    }

    #[test]
    fn the_documented_filter_values_are_the_actions() {
        let documented = serde_json::to_value([
            ActionName::Create,
            ActionName::Update,
            ActionName::Deactivate,
            ActionName::Reactivate,
            ActionName::Rotate,
            ActionName::Destroy,
            ActionName::Prune,
        ])
        .expect("json");
        use strum::VariantNames as _;
        assert_eq!(documented, serde_json::json!(Action::VARIANTS));
    }

    #[test]
    fn the_format_must_be_csv_or_jsonl() {
        assert_eq!(Format::parse(Some("format=csv")).ok(), Some(Format::Csv));
        assert_eq!(Format::parse(Some("a=1&format=jsonl")).ok(), Some(Format::Jsonl));
        for bad in ["", "format=xml", "format=csv&format=csv", "format="] {
            assert!(Format::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
