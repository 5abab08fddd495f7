//! Cursor paging shared by every paged listing (`/api/v2/users`,
//! `/api/v2/audit_logs`; docs/api.md describes the parameters): `page[size]`, the opaque
//! `page[after]`/`page[before]` cursors (an id, so a page never shifts when
//! rows are inserted), and the `meta`/`links` of a page.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_core::id::{AuditEventId, UserId};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::input::BaseUrl;

/// The id a listing pages by: its cursors carry one (`id:{n}`, the row id).
pub trait CursorId: Copy + fmt::Display {
    fn from_row_id(id: i64) -> Self;
}

impl CursorId for UserId {
    fn from_row_id(id: i64) -> Self {
        UserId::new(id)
    }
}

impl CursorId for AuditEventId {
    fn from_row_id(id: i64) -> Self {
        AuditEventId::new(id)
    }
}

/// The page parameters as the OpenAPI document describes them; requests are
/// read by [`PageQuery::parse`], which gives the exact 400s of docs/api.md.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Rows per page, 1–100 (default 100).
    #[param(rename = "page[size]", minimum = 1, maximum = 100, example = 25)]
    size: Option<i64>,
    /// An opaque cursor (a page's `meta.after_cursor`): the rows after it.
    #[param(rename = "page[after]", example = "aWQ6OTk")]
    after: Option<String>,
    /// An opaque cursor (a page's `meta.before_cursor`): the rows before it.
    /// Not together with `page[after]`.
    #[param(rename = "page[before]", example = "aWQ6MTAw")]
    before: Option<String>,
}

/// Where a page lies (docs/api.md, "Paging").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"has_more": true, "after_cursor": "aWQ6OTk", "before_cursor": "aWQ6MTAw"}))]
pub struct Meta {
    /// More rows lie beyond this page in the direction it was read.
    pub has_more: bool,
    /// The cursor of the page's last row; `null` for an empty page.
    #[schema(required = true)]
    pub after_cursor: Option<String>,
    /// The cursor of the page's first row; `null` for an empty page.
    #[schema(required = true)]
    pub before_cursor: Option<String>,
}

/// Absolute URLs of the neighbouring pages, carrying the listing's filters
/// and `page[size]`; `null` where there is none.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"next": "https://acme.example.com/api/v2/users.json?page[size]=100&page[after]=aWQ6OTk", "prev": null}))]
pub struct Links {
    #[schema(required = true)]
    pub next: Option<String>,
    #[schema(required = true)]
    pub prev: Option<String>,
}

/// Page parameters shared by cursor-paged listings (docs/api.md), whose
/// cursors name an `Id`.
#[derive(Debug)]
pub struct PageQuery<Id> {
    pub size: i64,
    pub after: Option<Id>,
    pub before: Option<Id>,
}

pub fn encode_cursor(id: impl CursorId) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

pub fn decode_cursor<Id: CursorId>(raw: &str) -> Result<Id, ApiError> {
    let bad = || ApiError::bad_request("The page cursor is not valid.");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    text.strip_prefix("id:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(Id::from_row_id)
        .ok_or_else(bad)
}

impl<Id: CursorId> PageQuery<Id> {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = PageQuery {
            size: 100,
            after: None,
            before: None,
        };
        let mut seen = (false, false, false);
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let once = |seen: &mut bool| {
                if std::mem::replace(seen, true) {
                    Err(ApiError::bad_request("A page parameter is given more than once."))
                } else {
                    Ok(())
                }
            };
            match key.as_ref() {
                "page[size]" => {
                    once(&mut seen.0)?;
                    page.size = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| ApiError::bad_request("page[size] must be a whole number from 1 to 100."))?;
                }
                "page[after]" => {
                    once(&mut seen.1)?;
                    page.after = Some(decode_cursor(&value)?);
                }
                "page[before]" => {
                    once(&mut seen.2)?;
                    page.before = Some(decode_cursor(&value)?);
                }
                _ => {}
            }
        }
        if page.after.is_some() && page.before.is_some() {
            return Err(ApiError::bad_request("Use page[after] or page[before], not both."));
        }
        Ok(page)
    }

    /// The `meta` and `links` of a page whose rows have ids `first` ..
    /// `last` (in listing order), for a listing at `path` whose other
    /// parameters are `carry` (canonical names; values are encoded here).
    pub fn meta_and_links(
        &self,
        base: &BaseUrl,
        path: &str,
        carry: &[(&str, String)],
        first: Option<Id>,
        last: Option<Id>,
        has_more: bool,
    ) -> (Meta, Links) {
        let first = first.map(encode_cursor);
        let last = last.map(encode_cursor);
        let mut prefix = String::new();
        for (k, v) in carry {
            let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
            prefix.push_str(&format!("{k}={v}&"));
        }
        let link = |dir: &str, cursor: &Option<String>| -> Option<String> {
            cursor
                .as_ref()
                .map(|c| base.join(&format!("{path}?{prefix}page[size]={}&page[{dir}]={c}", self.size)))
        };
        let empty = first.is_none();
        let backwards = self.before.is_some();
        let next = if (!backwards && has_more) || (backwards && !empty) {
            link("after", &last)
        } else {
            None
        };
        let prev = if (backwards && has_more) || (self.after.is_some() && !empty) {
            link("before", &first)
        } else {
            None
        };
        (
            Meta {
                has_more,
                after_cursor: last,
                before_cursor: first,
            },
            Links { next, prev },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(
            decode_cursor(&encode_cursor(UserId::new(42))).ok(),
            Some(UserId::new(42))
        );
        for bad in ["", "!!", "aWQ6LTE", "eHl6"] {
            assert!(decode_cursor::<UserId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageQuery::<UserId>::parse(None).map(|p| p.size).ok(), Some(100));
        assert_eq!(
            PageQuery::<UserId>::parse(Some("page%5Bsize%5D=5"))
                .map(|p| p.size)
                .ok(),
            Some(5)
        );
        for bad in [
            "page[size]=0",
            "page[size]=101",
            "page[size]=x",
            "page[size]=5&page[size]=6",
            "page[after]=zz&page[before]=zz",
        ] {
            assert!(PageQuery::<UserId>::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_carry_the_other_parameters() {
        let q = PageQuery::<UserId>::parse(Some("page[size]=2")).expect("valid");
        let base = BaseUrl("http://x".into());
        let carry = [("filter[ip_address]", "::1".to_owned())];
        let (meta, links) = q.meta_and_links(
            &base,
            "/a.json",
            &carry,
            Some(UserId::new(9)),
            Some(UserId::new(8)),
            true,
        );
        assert!(meta.has_more);
        assert_eq!(
            links.next,
            Some(format!(
                "http://x/a.json?filter[ip_address]=%3A%3A1&page[size]=2&page[after]={}",
                encode_cursor(UserId::new(8))
            ))
        );
        assert_eq!(links.prev, None);
    }
}
