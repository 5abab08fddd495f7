//! Restricted tokens: scope names, the resources a deployment offers, and
//! which resource a request's path belongs to (README.md, "Restricted
//! tokens"; docs/api.md, "Scopes").
//!
//! A scope is spelled as Zendesk spells its OAuth scopes: `read` (every
//! GET, HEAD and OPTIONS), `write` (every other method), `{resource}` (both),
//! `{resource}:read` and `{resource}:write`. latchkey's own resources are
//! `api_tokens`, `users`, `account` and `auditlogs`; a deployment adds its
//! own, each with path patterns, in its configuration file.
//!
//! The path matcher is written here rather than taken from a router crate
//! because its job is not routing but a security decision with two rules of
//! its own: a path is normalised the way an upstream would resolve it
//! (percent-decoding, `.`/`..` segments, empty segments, the `.json`
//! suffix) so that `..` can never carry a request out of the resource it is
//! judged by, and anything it cannot read with certainty is *claimed by no
//! resource*, which is the most restrictive answer: a path no resource
//! claims is allowed only to tokens holding the global `read` / `write`,
//! which every claimed path allows too.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use smallvec::SmallVec;
use strum::{Display, EnumIter, EnumString, IntoStaticStr, VariantNames};

use crate::error::{ErrorCode, Invalid};

/// What a request does to a resource: reading (GET, HEAD, OPTIONS) or
/// writing (every other method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, EnumString, VariantNames, EnumIter, Display)]
#[strum(serialize_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// The access a request with `method` needs. Methods are case-sensitive
    /// (RFC 9110): only `GET`, `HEAD` and `OPTIONS` read.
    pub fn of_method(method: &str) -> Access {
        match method {
            "GET" | "HEAD" | "OPTIONS" => Access::Read,
            _ => Access::Write,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One scope a token holds. `resource: None` is the global `read` or
/// `write`; `access: None` is both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    resource: Option<Box<str>>,
    access: Option<Access>,
}

impl Scope {
    /// Reads a scope name by its shape alone (a stored value): a resource
    /// this deployment does not offer simply covers nothing.
    pub fn from_stored(name: &str) -> Option<Scope> {
        let (resource, access) = match name.split_once(':') {
            Some((r, a)) => (r, Some(a.parse::<Access>().ok()?)),
            None => (name, None),
        };
        if let (None, Ok(access)) = (access, resource.parse::<Access>()) {
            return Some(Scope {
                resource: None,
                access: Some(access),
            });
        }
        is_resource_name(resource).then(|| Scope {
            resource: Some(resource.into()),
            access,
        })
    }

    /// Whether this scope lets a request do `access` to `resource` (`None`:
    /// a path no resource claims).
    pub fn covers(&self, resource: Option<&str>, access: Access) -> bool {
        let access_ok = self.access.is_none_or(|a| a == access);
        match &self.resource {
            None => access_ok,
            Some(mine) => access_ok && resource == Some(&**mine),
        }
    }

    /// The resource this scope names, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn access(&self) -> Option<Access> {
        self.access
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.resource, self.access) {
            (None, Some(a)) => f.write_str(a.as_str()),
            (Some(r), None) => f.write_str(r),
            (Some(r), Some(a)) => write!(f, "{r}:{a}"),
            (None, None) => f.write_str("read write"),
        }
    }
}

/// A restricted token's scopes: never empty, no repeats, in the order
/// given. An unrestricted token has no `Scopes` at all (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// The most scopes one token may hold.
    pub const MAX: usize = 100;

    /// Scopes from a stored, space-separated value; names of unknown shape
    /// are dropped (they could grant nothing). `None` for an empty value.
    pub fn from_stored(text: &str) -> Option<Scopes> {
        let mut out: Vec<Scope> = Vec::new();
        for scope in text.split_ascii_whitespace().filter_map(Scope::from_stored) {
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        (!out.is_empty()).then_some(Scopes(out))
    }

    /// The stored form: names separated by single spaces (also the
    /// `X-Latchkey-Scopes` header).
    pub fn to_stored(&self) -> String {
        self.names().collect::<Vec<_>>().join(" ")
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(Scope::to_string)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether any scope lets a request do `access` to `resource`.
    pub fn cover(&self, resource: Option<&str>, access: Access) -> bool {
        self.0.iter().any(|s| s.covers(resource, access))
    }

    /// The scopes as an admin reads them: `tickets: read`, `users`,
    /// `read`, joined by commas.
    pub fn short_form(&self) -> String {
        self.0
            .iter()
            .map(|s| match (s.resource(), s.access) {
                (Some(r), Some(a)) => format!("{r}: {a}"),
                _ => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `scopes changed from full access to "tickets:read users:read"`: how the
/// audit log words a change of a token's scopes.
pub fn describe(scopes: Option<&Scopes>) -> String {
    match scopes {
        None => "full access".to_owned(),
        Some(s) => format!("\"{}\"", s.to_stored()),
    }
}

fn is_resource_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=40).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A resource as the configuration file declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    pub name: String,
    pub description: String,
    pub paths: Vec<String>,
}

/// What a request is, for the scope check: its method's access and its
/// path, whose resource is looked up only when a restricted token asks (an
/// unrestricted token, the common case, never pays for the path matcher).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    catalog: &'a ScopeCatalog,
    uri: &'a str,
    access: Access,
}

impl<'a> Target<'a> {
    /// The resource that claims the path (`None`: none does).
    pub fn resource(&self) -> Option<&'a str> {
        self.catalog.resource_of(self.uri)
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// The scope a token lacks when it is refused this target:
    /// `tickets:write`, or `write` on a path no resource claims.
    pub fn required_scope(&self) -> String {
        match self.resource() {
            Some(r) => format!("{r}:{}", self.access),
            None => self.access.as_str().to_owned(),
        }
    }

    /// Whether a token with `scopes` (`None`: unrestricted) may make this request.
    pub fn allowed(&self, scopes: Option<&Scopes>) -> bool {
        scopes.is_none_or(|s| s.cover(self.resource(), self.access))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments, none included.
    Any,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<Segment>,
    resource: usize,
    /// The fewest and most path segments it can match (`None`: no most),
    /// so that most patterns are ruled out by a path's length alone.
    min_len: usize,
    max_len: Option<usize>,
}

impl Pattern {
    fn parse(text: &str, resource: usize) -> Result<Pattern, String> {
        if !text.starts_with('/') {
            return Err(format!("path pattern {text:?} must start with /"));
        }
        let mut segments = Vec::new();
        for seg in text.split('/').filter(|s| !s.is_empty()) {
            segments.push(match seg {
                "*" => Segment::One,
                "**" => Segment::Any,
                "." | ".." => return Err(format!("path pattern {text:?} has a . or .. segment")),
                s if s.contains('*') => {
                    return Err(format!("path pattern {text:?}: * and ** stand for whole segments only"))
                }
                s if s.contains(['%', '?', '#', '\\']) || s.chars().any(char::is_control) => {
                    return Err(format!(
                        "path pattern {text:?} may not hold %, ?, #, \\ or control characters"
                    ))
                }
                s => Segment::Literal(s.strip_suffix(".json").filter(|s| !s.is_empty()).unwrap_or(s).into()),
            });
        }
        let fixed = segments.iter().filter(|s| **s != Segment::Any).count();
        let max_len = (!segments.contains(&Segment::Any)).then_some(fixed);
        Ok(Pattern {
            segments,
            resource,
            min_len: fixed,
            max_len,
        })
    }

    /// More literal segments first, then fewer `**`, then fewer `*`: the
    /// most specific pattern decides.
    fn specificity(&self) -> (usize, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>) {
        let count = |k: fn(&Segment) -> bool| self.segments.iter().filter(|s| k(s)).count();
        (
            count(|s| matches!(s, Segment::Literal(_))),
            std::cmp::Reverse(count(|s| *s == Segment::Any)),
            std::cmp::Reverse(count(|s| *s == Segment::One)),
        )
    }

    /// Whether the pattern matches `path`, whose first `known` segments are
    /// already known to equal the pattern's first, literal, ones.
    fn matches_after<S: AsRef<str>>(&self, known: usize, path: &[S]) -> bool {
        path.len() >= self.min_len
            && self.max_len.is_none_or(|max| path.len() <= max)
            && matches_from(&self.segments[known..], &path[known..])
    }
}

fn matches_from<S: AsRef<str>>(pattern: &[Segment], path: &[S]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        // A trailing `**` takes whatever is left.
        Some((Segment::Any, [])) => true,
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| matches_from(rest, &path[skip..])),
        Some((Segment::One, rest)) => !path.is_empty() && matches_from(rest, &path[1..]),
        Some((Segment::Literal(l), rest)) => {
            path.first().is_some_and(|p| p.as_ref() == &**l) && matches_from(rest, &path[1..])
        }
    }
}

/// The most segments a path may have to be matched; longer paths are
/// claimed by no resource.
const MAX_SEGMENTS: usize = 64;

type Segments<'a> = SmallVec<[Cow<'a, str>; 12]>;
/// Segments that are slices of the URI (plain paths, the hot case).
type PlainSegments<'a> = SmallVec<[&'a str; 16]>;

/// How a request path is read: as the upstream would resolve it, segment by
/// segment, or `None` when it cannot be read with certainty (then no
/// resource claims it). A plain path (printable ASCII, nothing to decode;
/// the hot case) goes through [`normalize_plain`], whose segments are
/// slices of the URI; any other through [`normalize_any`].
///
/// The query string and fragment are dropped; an absolute-form URI
/// (`https://host/path`) is reduced to its path; empty segments (`//`, a
/// trailing `/`) are dropped; each segment is percent-decoded, and one that
/// decodes to invalid UTF-8 or holds `/`, `\` or a control character makes
/// the path unreadable; `.` is dropped and `..` removes the segment before
/// it (never above the root); a final `.json` is dropped, as Zendesk's API
/// answers every path with or without it.
/// What [`normalize_plain`] made of a URI.
enum PlainPath {
    Read,
    /// Plain but unreadable (too many segments): no resource claims it.
    Unreadable,
    /// Not a plain path: read it with [`normalize_any`].
    NotPlain,
}

/// Reads a plain path (starting with `/`, printable ASCII without `%` or
/// `\\` up to its query or fragment) into `out`, in one pass over the
/// bytes that both checks and splits: the hot case. Split by hand, as
/// `str::split` searches for each `/` with `memchr`, whose set-up costs
/// more than these short segments.
fn normalize_plain<'a>(uri: &'a str, out: &mut PlainSegments<'a>) -> PlainPath {
    let bytes = uri.as_bytes();
    if bytes.first() != Some(&b'/') {
        return PlainPath::NotPlain;
    }
    let mut start = 0;
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                if resolve(out, &uri[start..i]).is_none() {
                    return PlainPath::Unreadable;
                }
                start = i + 1;
            }
            b'?' | b'#' => {
                end = i;
                break;
            }
            b'%' | b'\\' => return PlainPath::NotPlain,
            0x21..0x7f => {}
            _ => return PlainPath::NotPlain,
        }
    }
    if resolve(out, &uri[start..end]).is_none() {
        return PlainPath::Unreadable;
    }
    if let Some(last) = out.last_mut() {
        if let Some(len) = json_stem(last) {
            *last = &last[..len];
        }
    }
    PlainPath::Read
}

/// Adds one segment to a path being resolved: empty and `.` segments are
/// dropped, `..` removes the one before (never above the root); `None` when
/// the path grows past [`MAX_SEGMENTS`].
fn resolve<A>(out: &mut SmallVec<A>, seg: A::Item) -> Option<()>
where
    A: smallvec::Array,
    A::Item: AsRef<str>,
{
    match seg.as_ref() {
        "" | "." => {}
        ".." => {
            out.pop();
        }
        _ if out.len() == MAX_SEGMENTS => return None,
        _ => out.push(seg),
    }
    Some(())
}

/// The length of a last segment without its `.json` suffix, if it has one
/// and something before it.
fn json_stem(last: &str) -> Option<usize> {
    last.strip_suffix(".json").filter(|s| !s.is_empty()).map(str::len)
}

/// The path of any URI that is not plain: absolute-form, percent-encoded,
/// or holding bytes a plain path does not.
fn normalize_any(uri: &str) -> Option<Segments<'_>> {
    let uri = match uri.find("://") {
        Some(i) if uri[..i].bytes().all(|b| b.is_ascii_alphabetic()) && i > 0 => {
            let rest = &uri[i + 3..];
            &rest[rest.find('/')?..]
        }
        _ => uri,
    };
    let path = uri.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let mut out: Segments<'_> = SmallVec::new();
    for raw in path.split('/') {
        if raw.is_empty() {
            continue;
        }
        let seg: Cow<'_, str> = if raw.contains('%') {
            percent_encoding::percent_decode_str(raw).decode_utf8().ok()?
        } else {
            Cow::Borrowed(raw)
        };
        if seg.contains(['/', '\\']) || seg.chars().any(char::is_control) {
            return None;
        }
        resolve(&mut out, seg)?;
    }
    if let Some(last) = out.last_mut() {
        if let Some(len) = json_stem(last) {
            match last {
                Cow::Borrowed(b) => *b = &b[..len],
                Cow::Owned(o) => o.truncate(len),
            }
        }
    }
    Some(out)
}

#[derive(Debug, Clone)]
struct Resource {
    name: Box<str>,
    description: Box<str>,
}

/// One scope a deployment offers, as `GET /api/v2/scopes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeInfo {
    pub name: String,
    pub description: String,
}

/// The resources a deployment offers and the paths each claims: latchkey's
/// own (`api_tokens`, `users`, `account`, `auditlogs`) and the
/// configuration file's.
#[derive(Debug, Clone)]
pub struct ScopeCatalog {
    resources: Vec<Resource>,
    /// Most specific first.
    patterns: Vec<Pattern>,
    /// The patterns by their literal prefix.
    index: PrefixIndex,
}

/// The catalog's patterns filed under their literal prefix (the segments
/// before the first `*` or `**`), so that a path is tried only against the
/// patterns whose prefix it shares: one hash probe per segment walked, not
/// a comparison with every pattern of every resource. Hand-written because
/// it is the scope check's hot path and small: a trie of literal segments.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    /// Patterns whose literal prefix ends here, as indexes into
    /// `ScopeCatalog::patterns` (ascending: most specific first).
    here: Vec<usize>,
    next: HashMap<Box<str>, PrefixIndex, foldhash::fast::RandomState>,
}

impl PrefixIndex {
    fn new(patterns: &[Pattern]) -> Self {
        let mut root = PrefixIndex::default();
        for (i, pattern) in patterns.iter().enumerate() {
            let mut node = &mut root;
            for segment in &pattern.segments {
                let Segment::Literal(literal) = segment else {
                    break;
                };
                node = node.next.entry(literal.clone()).or_default();
            }
            node.here.push(i);
        }
        root
    }

    /// The first (most specific) of `patterns` that matches `path`: only a
    /// pattern whose literal prefix is a prefix of the path can, and each
    /// such prefix is a node on the path's walk down the trie.
    fn first_match<S: AsRef<str>>(&self, patterns: &[Pattern], path: &[S]) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut node = self;
        let mut depth = 0;
        loop {
            if let Some(&i) = node
                .here
                .iter()
                .take_while(|&&i| best.is_none_or(|b| i < b))
                .find(|&&i| patterns[i].matches_after(depth, path))
            {
                best = Some(i);
            }
            let Some(next) = path.get(depth).and_then(|segment| node.next.get(segment.as_ref())) else {
                return best;
            };
            node = next;
            depth += 1;
        }
    }
}

impl Default for ScopeCatalog {
    fn default() -> Self {
        Self::with_resources(Vec::new()).expect("latchkey's own resources are valid")
    }
}

/// latchkey's own resources: its REST API's paths.
fn builtin() -> Vec<ResourceDef> {
    let def = |name: &str, description: &str, base: &str| ResourceDef {
        name: name.into(),
        description: description.into(),
        paths: vec![base.into(), format!("{base}/**")],
    };
    vec![
        def("api_tokens", "API tokens", "/api/v2/api_tokens"),
        def(
            "users",
            "Users, including the caller's own record (/users/me)",
            "/api/v2/users",
        ),
        def("account", "The account and its settings", "/api/v2/account"),
        def("auditlogs", "The audit log", "/api/v2/audit_logs"),
    ]
}

impl ScopeCatalog {
    /// latchkey's own resources.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// latchkey's own resources and `extra`, the deployment's. A name must
    /// match `^[a-z][a-z0-9_]{0,39}$`, be unique and not be `read` or
    /// `write`; a description is required; each resource claims at least one
    /// path pattern.
    pub fn with_resources(extra: Vec<ResourceDef>) -> Result<Self, String> {
        let mut resources: Vec<Resource> = Vec::new();
        let mut patterns = Vec::new();
        for def in builtin().into_iter().chain(extra) {
            if !is_resource_name(&def.name) || def.name.parse::<Access>().is_ok() {
                return Err(format!(
                    "resource name {:?} must match ^[a-z][a-z0-9_]{{0,39}}$ and not be read or write",
                    def.name
                ));
            }
            if resources.iter().any(|r| *r.name == *def.name) {
                return Err(format!("resource {:?} is declared twice", def.name));
            }
            let description = def.description.trim();
            if description.is_empty() || description.chars().count() > 255 || description.chars().any(char::is_control)
            {
                return Err(format!(
                    "resource {:?} needs a description of 1 to 255 characters on one line",
                    def.name
                ));
            }
            if def.paths.is_empty() {
                return Err(format!("resource {:?} claims no path", def.name));
            }
            for path in &def.paths {
                patterns
                    .push(Pattern::parse(path, resources.len()).map_err(|e| format!("resource {:?}: {e}", def.name))?);
            }
            resources.push(Resource {
                name: def.name.into(),
                description: description.into(),
            });
        }
        // Stable: among equally specific patterns, the first declared wins.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.specificity()));
        let index = PrefixIndex::new(&patterns);
        Ok(ScopeCatalog {
            resources,
            patterns,
            index,
        })
    }

    /// The resource that claims `uri` (a path, maybe with a query string),
    /// or `None` when no resource does or the path cannot be read.
    pub fn resource_of(&self, uri: &str) -> Option<&str> {
        // Plain paths (printable ASCII, nothing to decode) are the hot
        // case: one pass over the bytes decides, and segments are slices.
        let mut segments = PlainSegments::new();
        let pattern = match normalize_plain(uri, &mut segments) {
            PlainPath::Read => self.index.first_match(&self.patterns, &segments),
            PlainPath::Unreadable => None,
            PlainPath::NotPlain => self.index.first_match(&self.patterns, &normalize_any(uri)?),
        };
        pattern.map(|i| &*self.resources[self.patterns[i].resource].name)
    }

    /// What a request with `method` to `uri` is, for the scope check; the
    /// path is matched only if the check needs it.
    pub fn target<'a>(&'a self, method: &str, uri: &'a str) -> Target<'a> {
        Target {
            catalog: self,
            uri,
            access: Access::of_method(method),
        }
    }

    /// Parses a scope name given by an admin: it must be one this deployment
    /// offers (422 `InvalidValue` on `scopes` otherwise).
    pub fn parse_scope(&self, name: &str) -> Result<Scope, Invalid> {
        let unknown = || {
            Invalid::new(
                "scopes",
                ErrorCode::InvalidValue,
                format!(
                    "{} is not a scope this deployment offers; GET /api/v2/scopes lists them.",
                    shown(name)
                ),
            )
        };
        let scope = Scope::from_stored(name).ok_or_else(unknown)?;
        match scope.resource() {
            Some(r) if !self.resources.iter().any(|known| *known.name == *r) => Err(unknown()),
            _ => Ok(scope),
        }
    }

    /// Parses a token's scopes as an admin gives them: a non-empty list of
    /// offered names (repeats dropped), at most [`Scopes::MAX`].
    pub fn parse_scopes<S: AsRef<str>>(&self, names: &[S]) -> Result<Scopes, Invalid> {
        if names.is_empty() {
            return Err(Invalid::new(
                "scopes",
                ErrorCode::InvalidValue,
                "A restricted token needs at least one scope; use null for full access.",
            ));
        }
        if names.len() > Scopes::MAX {
            return Err(Invalid::new(
                "scopes",
                ErrorCode::InvalidValue,
                format!("A token may hold at most {} scopes.", Scopes::MAX),
            ));
        }
        let mut out: Vec<Scope> = Vec::with_capacity(names.len());
        for name in names {
            let scope = self.parse_scope(name.as_ref())?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(Scopes(out))
    }

    /// Every scope this deployment offers, with a description: `read`,
    /// `write`, then per resource `{r}`, `{r}:read`, `{r}:write`.
    pub fn scopes(&self) -> Vec<ScopeInfo> {
        let info = |name: String, description: String| ScopeInfo { name, description };
        let mut out = vec![
            info(
                "read".into(),
                "Read everything the user may read (GET, HEAD and OPTIONS requests)".into(),
            ),
            info(
                "write".into(),
                "Change everything the user may change (every other method)".into(),
            ),
        ];
        for r in &self.resources {
            out.push(info(r.name.to_string(), format!("{}: read and change", r.description)));
            out.push(info(format!("{}:read", r.name), format!("{}: read", r.description)));
            out.push(info(format!("{}:write", r.name), format!("{}: change", r.description)));
        }
        out
    }

    /// The resources' names and descriptions, in declaration order
    /// (latchkey's own first), for pages that group scopes by resource.
    pub fn resources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.resources.iter().map(|r| (&*r.name, &*r.description))
    }
}

/// A name as an error message may quote it: at most 40 characters, never
/// control characters (an admin's input, echoed back to that admin).
fn shown(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
    format!("{clean:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> ScopeCatalog {
        ScopeCatalog::with_resources(vec![
            ResourceDef {
                name: "tickets".into(),
                description: "Tickets and their comments".into(),
                paths: vec!["/api/v2/tickets".into(), "/api/v2/tickets/**".into()],
            },
            ResourceDef {
                name: "ticket_fields".into(),
                description: "Ticket fields".into(),
                paths: vec!["/api/v2/tickets/fields/**".into(), "/api/v2/tickets/*/fields".into()],
            },
            ResourceDef {
                name: "hc".into(),
                description: "Help Center".into(),
                paths: vec!["/hc/*/articles/**".into()],
            },
        ])
        .expect("valid")
    }

    proptest::proptest! {
        /// The prefix index finds what trying every pattern in order finds.
        #[test]
        fn the_prefix_index_agrees_with_trying_every_pattern(
            segments in proptest::collection::vec(
                proptest::sample::select(vec!["api", "v2", "tickets", "fields", "7", "hc", "en", "articles", "users", "me"]),
                0..7,
            )
        ) {
            let c = catalog();
            let linear = c.patterns.iter().position(|p| p.matches_after(0, &segments));
            proptest::prop_assert_eq!(c.index.first_match(&c.patterns, &segments), linear);
        }
    }

    /// The path matcher, as a table: (path, the resource that claims it).
    #[test]
    fn the_path_matcher_table() {
        let c = catalog();
        let table: &[(&str, Option<&str>)] = &[
            // Exact paths and `**` below them.
            ("/api/v2/tickets", Some("tickets")),
            ("/api/v2/tickets/7", Some("tickets")),
            ("/api/v2/tickets/7/comments/3", Some("tickets")),
            // `**` matches no segment too; a prefix of a segment is not a match.
            ("/api/v2/ticketsfoo", None),
            ("/api/v2/ticket", None),
            // The `.json` suffix is ignored, on any last segment.
            ("/api/v2/tickets.json", Some("tickets")),
            ("/api/v2/tickets/7.json", Some("tickets")),
            ("/api/v2/users/me.json", Some("users")),
            ("/api/v2/.json", None),
            // Query strings and fragments are ignored.
            ("/api/v2/tickets?page=2", Some("tickets")),
            ("/api/v2/users?next=/api/v2/tickets", Some("users")),
            ("/api/v2/tickets.json?x=1#top", Some("tickets")),
            // Trailing and doubled slashes.
            ("/api/v2/tickets/", Some("tickets")),
            ("//api//v2//tickets//", Some("tickets")),
            // `*` is exactly one segment.
            ("/hc/en-us/articles/12", Some("hc")),
            ("/hc/articles/12", None),
            ("/hc/en/us/articles/12", None),
            // The most specific pattern decides.
            ("/api/v2/tickets/fields/3", Some("ticket_fields")),
            ("/api/v2/tickets/9/fields", Some("ticket_fields")),
            ("/api/v2/tickets/9/fields/2", Some("tickets")),
            // latchkey's own resources.
            ("/api/v2/api_tokens/3", Some("api_tokens")),
            ("/api/v2/account/settings", Some("account")),
            ("/api/v2/audit_logs/export", Some("auditlogs")),
            // A path no resource claims.
            ("/api/v2/organizations", None),
            ("/", None),
            ("", None),
            // Percent-encoding is decoded before matching.
            ("/api/v2/%74ickets/1", Some("tickets")),
            ("/api%2Fv2/tickets", None),
            ("/api/v2/tick%FFets", None),
            ("/api/v2/tickets%00", None),
            // `..` is resolved: it never widens a match.
            ("/api/v2/tickets/../users", Some("users")),
            ("/api/v2/tickets/%2e%2e/api_tokens/1", Some("api_tokens")),
            ("/api/v2/tickets/7/../../users/1", Some("users")),
            ("/api/v2/users/../tickets/1", Some("tickets")),
            ("/../../api/v2/tickets", Some("tickets")),
            ("/api/v2/tickets/./7", Some("tickets")),
            ("/api/v2/tickets/7/..", Some("tickets")),
            ("/api/v2/tickets/..", None),
            // Unreadable paths are claimed by nobody.
            ("api/v2/tickets", None),
            ("/api/v2\\tickets", None),
            // Absolute-form URIs are reduced to their path.
            ("https://example.com/api/v2/tickets/1", Some("tickets")),
            ("http://example.com", None),
            // Case matters, as in the upstream's router.
            ("/API/V2/TICKETS", None),
        ];
        assert!(table.len() >= 25);
        for (path, want) in table {
            assert_eq!(c.resource_of(path), *want, "{path:?}");
        }
    }

    #[test]
    fn a_very_deep_path_is_claimed_by_nobody() {
        let c = catalog();
        let deep = format!("/api/v2/tickets{}", "/x".repeat(MAX_SEGMENTS));
        assert_eq!(c.resource_of(&deep), None);
        let fits = format!("/api/v2/tickets{}", "/x".repeat(MAX_SEGMENTS - 3));
        assert_eq!(c.resource_of(&fits), Some("tickets"));
    }

    #[test]
    fn methods_read_or_write() {
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(Access::of_method(m), Access::Read);
        }
        for m in ["POST", "PUT", "PATCH", "DELETE", "get", "", "TRACE"] {
            assert_eq!(Access::of_method(m), Access::Write);
        }
    }

    fn scopes(c: &ScopeCatalog, names: &[&str]) -> Scopes {
        c.parse_scopes(names).expect("valid scopes")
    }

    #[test]
    fn scopes_cover_what_zendesk_says_they_cover() {
        let c = catalog();
        let t = |m: &str, p: &'static str| c.target(m, p);
        let read_tickets = scopes(&c, &["tickets:read"]);
        assert!(t("GET", "/api/v2/tickets/1").allowed(Some(&read_tickets)));
        assert!(!t("PUT", "/api/v2/tickets/1").allowed(Some(&read_tickets)));
        assert!(!t("GET", "/api/v2/users/me").allowed(Some(&read_tickets)));
        assert!(!t("GET", "/api/v2/organizations").allowed(Some(&read_tickets)));
        let tickets = scopes(&c, &["tickets"]);
        assert!(t("DELETE", "/api/v2/tickets/1").allowed(Some(&tickets)));
        let read = scopes(&c, &["read"]);
        assert!(t("GET", "/api/v2/organizations").allowed(Some(&read)));
        assert!(t("HEAD", "/api/v2/users").allowed(Some(&read)));
        assert!(!t("POST", "/api/v2/organizations").allowed(Some(&read)));
        let write = scopes(&c, &["write", "users:read"]);
        assert!(t("POST", "/api/v2/organizations").allowed(Some(&write)));
        assert!(t("GET", "/api/v2/users").allowed(Some(&write)));
        assert!(!t("GET", "/api/v2/tickets").allowed(Some(&write)));
        assert!(t("GET", "/anything").allowed(None));
    }

    #[test]
    fn the_required_scope_names_the_resource_and_the_access() {
        let c = catalog();
        assert_eq!(c.target("POST", "/api/v2/tickets").required_scope(), "tickets:write");
        assert_eq!(c.target("GET", "/api/v2/users/me").required_scope(), "users:read");
        assert_eq!(c.target("PATCH", "/elsewhere").required_scope(), "write");
        assert_eq!(c.target("GET", "/elsewhere").required_scope(), "read");
    }

    #[test]
    fn only_offered_scopes_parse_and_repeats_are_dropped() {
        let c = catalog();
        let s = scopes(&c, &["tickets:read", "users:write", "tickets:read", "read"]);
        assert_eq!(s.to_stored(), "tickets:read users:write read");
        assert_eq!(s.short_form(), "tickets: read, users: write, read");
        for bad in [
            "",
            "tickets:delete",
            "organizations",
            "Tickets",
            "read:tickets",
            "tickets:",
            ":read",
            "a b",
        ] {
            let err = c.parse_scopes(&[bad]).expect_err(bad);
            assert_eq!(
                (err.field.as_str(), err.code),
                ("scopes", ErrorCode::InvalidValue),
                "{bad}"
            );
        }
        assert!(c.parse_scopes::<&str>(&[]).is_err());
        let many: Vec<String> = (0..=Scopes::MAX).map(|_| "read".to_owned()).collect();
        assert!(c.parse_scopes(&many).is_err());
        assert!(ScopeCatalog::builtin().parse_scope("tickets").is_err());
    }

    #[test]
    fn stored_scopes_round_trip_and_unknown_resources_cover_nothing() {
        let c = catalog();
        let s = scopes(&c, &["tickets", "users:read", "write"]);
        assert_eq!(Scopes::from_stored(&s.to_stored()), Some(s));
        assert_eq!(Scopes::from_stored(""), None);
        // A resource this node does not offer (another node's configuration).
        let other = Scopes::from_stored("invoices:read").expect("shape is fine");
        assert!(!c.target("GET", "/api/v2/tickets").allowed(Some(&other)));
    }

    #[test]
    fn the_catalog_lists_every_scope_with_a_description() {
        let c = catalog();
        let names: Vec<String> = c.scopes().into_iter().map(|s| s.name).collect();
        assert_eq!(
            &names[..5],
            ["read", "write", "api_tokens", "api_tokens:read", "api_tokens:write"]
        );
        assert!(names.contains(&"tickets:write".to_owned()));
        assert_eq!(names.len(), 2 + 3 * 7);
        assert!(c.scopes().iter().all(|s| !s.description.is_empty()));
        for s in c.scopes() {
            assert!(c.parse_scope(&s.name).is_ok(), "{}", s.name);
        }
    }

    #[test]
    fn bad_resource_declarations_are_refused() {
        let def = |name: &str, paths: &[&str]| ResourceDef {
            name: name.into(),
            description: "x".into(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        for (bad, why) in [
            (def("Tickets", &["/t"]), "name"),
            (def("read", &["/t"]), "name"),
            (def("users", &["/t"]), "twice"),
            (def("t", &[]), "no path"),
            (def("t", &["t/x"]), "start with /"),
            (def("t", &["/t*"]), "whole segments"),
            (def("t", &["/a/../b"]), ".."),
            (def("t", &["/a%2f"]), "%"),
            (def(&"a".repeat(41), &["/t"]), "name"),
        ] {
            let err = ScopeCatalog::with_resources(vec![bad]).expect_err(why);
            assert!(err.contains(why), "{err} / {why}");
        }
        let mut blank = def("t", &["/t"]);
        blank.description = "  ".into();
        assert!(ScopeCatalog::with_resources(vec![blank]).is_err());
    }
}
