//! `/admin/people`: the account's users, adding one (name, email, role,
//! verified), editing one (name, email, verified, a new password), changing
//! a role (behind a confirmation), suspending and deleting (README.md,
//! "First run: a token from the browser", on People). Every change goes
//! through the service layer with the admin's access; an email taken by
//! another user of the account (compared case-insensitively) is refused on
//! its field.

use std::sync::LazyLock;

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use latchkey_app::{AppError, Page};
use latchkey_core::{
    id::UserId,
    user::{parse_user_name, Email, NewUser, Role, User, UserPatch},
    DomainError, ErrorCode, Invalid,
};
use serde::Deserialize;
use strum::IntoEnumIterator;

use super::page::{capitalised, render, show_time, Confirm, Layout, Nav, PageError, PageResult};
use super::session::{AdminForm, AdminPage};
use super::tokens::ConfirmTemplate;
use super::{action_path, record_id};
use crate::state::AppState;

const LIST: &str = "/admin/people";
const PAGE_SIZE: i64 = 100;

/// One user as the people page shows it.
pub struct PersonView {
    pub id: UserId,
    pub name: String,
    pub email: Email,
    pub role: &'static str,
    pub role_label: &'static str,
    pub verified: bool,
    pub suspended: bool,
    pub created: String,
    pub created_iso: String,
    pub is_you: bool,
}

/// A role's label on the pages.
fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "Admin",
        Role::Agent => "Agent",
        Role::EndUser => "End user",
    }
}

/// The roles, as (value, label) for a select: every `Role`, in its order,
/// by its wire spelling.
pub static ROLES: LazyLock<Vec<(&'static str, &'static str)>> =
    LazyLock::new(|| Role::iter().map(|r| (r.as_str(), role_label(r))).collect());

/// A fixed notice for `?done=…` after a change, naming the user of
/// `?id=…` as the account holds them (never client text).
async fn notice(state: &AppState, admin: &AdminPage, query: Option<&str>) -> Result<Option<String>, PageError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(done) = get("done") else {
        return Ok(None);
    };
    let what = match done {
        "added" => "added",
        "updated" => "updated",
        "role" => "now has a new role",
        "suspended" => "suspended",
        "unsuspended" => "unsuspended",
        "deleted" => "deleted",
        _ => return Ok(None),
    };
    let id = get("id")
        .and_then(|v| v.parse::<UserId>().ok())
        .filter(|id| *id > UserId::new(0));
    let user = match id {
        Some(id) => state.app.user_including_deleted(&admin.access, id).await?,
        None => None,
    };
    Ok(Some(match user {
        Some(u) if done == "role" => format!("{} <{}> is now {}.", u.name, u.email, article(u.role)),
        Some(u) => format!("User {} <{}> {what}.", u.name, u.email),
        None => format!("User {what}."),
    }))
}

/// "an admin", "an agent", "an end user".
fn article(role: Role) -> String {
    format!("an {}", role_label(role).to_lowercase())
}

/// The redirect to the list after a change to `id`.
fn done(what: &str, id: UserId) -> Redirect {
    Redirect::to(&format!("{LIST}?done={what}&id={id}"))
}

fn after(query: Option<&str>) -> Option<UserId> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "after")
        .and_then(|(_, v)| v.parse::<UserId>().ok())
        .filter(|id| *id >= UserId::new(0))
}

#[derive(Template)]
#[template(path = "people.html")]
struct ListTemplate<'a> {
    l: Layout,
    people: Vec<PersonView>,
    next: Option<UserId>,
    notice: Option<&'a str>,
    confirms: PeopleConfirms,
}

pub async fn list(State(state): State<AppState>, admin: AdminPage, RawQuery(query): RawQuery) -> PageResult {
    let page = Page {
        after: after(query.as_deref()),
        before: None,
        size: PAGE_SIZE,
    };
    let (users, has_more) = state.app.users_page(&admin.access, page).await?;
    let me = admin.user().id;
    let notice = notice(&state, &admin, query.as_deref()).await?;
    let next = has_more.then(|| users.last().map(|u| u.id)).flatten();
    let people = users
        .into_iter()
        .map(|u| PersonView {
            id: u.id,
            role: u.role.as_str(),
            role_label: role_label(u.role),
            verified: u.verified,
            suspended: u.suspended,
            created: show_time(u.created_at).replace(" UTC", "\u{a0}UTC"),
            created_iso: u.created_at.rfc3339(),
            is_you: u.id == me,
            name: u.name,
            email: u.email,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ListTemplate {
            l: admin.layout(Nav::People),
            people,
            next,
            notice: notice.as_deref(),
            confirms: people_confirms(),
        },
    ))
}

#[derive(Template)]
#[template(path = "person_new.html")]
struct NewTemplate<'a> {
    l: Layout,
    name: &'a str,
    email: &'a str,
    role: &'a str,
    verified: bool,
    roles: &'static [(&'static str, &'static str)],
    errors: Vec<FieldError>,
}

impl NewTemplate<'_> {
    fn error(&self, field: &str) -> Option<&str> {
        FieldError::find(&self.errors, field)
    }
}

pub async fn new(admin: AdminPage) -> PageResult {
    Ok(render(
        StatusCode::OK,
        &NewTemplate {
            l: admin.layout(Nav::People),
            name: "",
            email: "",
            role: "end_user",
            verified: true,
            roles: ROLES.as_slice(),
            errors: Vec::new(),
        },
    ))
}

pub async fn create(State(state): State<AppState>, form: AdminForm) -> PageResult {
    let AdminForm { admin, fields } = form;
    let (name, email, role) = (fields.text("name"), fields.text("email"), fields.text("role"));
    let verified = fields.checked("verified");
    let refused = |errors: Vec<FieldError>| {
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewTemplate {
                l: admin.layout(Nav::People),
                name,
                email,
                role,
                verified,
                roles: ROLES.as_slice(),
                errors,
            },
        )
    };
    let (n, e, r) = (parse_user_name(name), Email::parse(email), Role::parse(role));
    let (Ok(n), Ok(e), Ok(r)) = (&n, &e, &r) else {
        return Ok(refused(FieldError::all([n.err(), e.err(), r.err()])));
    };
    let new = NewUser {
        name: n.clone(),
        email: e.clone(),
        role: *r,
        verified,
        password_hash: None,
    };
    match state.app.create_user(&admin.access, new).await {
        Ok(u) => Ok(done("added", u.id).into_response()),
        Err(AppError::Domain(DomainError::Invalid(list))) => Ok(refused(field_errors(&list))),
        Err(e) => Err(e.into()),
    }
}

/// A refused field's message, capitalised, and the form field it is about
/// (its id, for `aria-describedby`; "" for none).
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The form's words for a refusal the service layer explains in the API's
/// (docs/api.md's 422 `Taken` on `email`).
const EMAIL_TAKEN: &str = "That email is already used by someone in this account.";

/// The form errors of the service layer's 422 refusals.
fn field_errors(list: &[Invalid]) -> Vec<FieldError> {
    list.iter()
        .map(|i| match (i.field.as_str(), i.code) {
            ("email", ErrorCode::Taken) => FieldError::of("email", EMAIL_TAKEN),
            _ => FieldError::of(&i.field, &i.description),
        })
        .collect()
}

impl FieldError {
    /// The form's errors, one for each field whose parse failed.
    fn all<const N: usize>(parsed: [Option<latchkey_core::Invalid>; N]) -> Vec<FieldError> {
        parsed
            .into_iter()
            .flatten()
            .map(|i| FieldError::of(&i.field, &i.description))
            .collect()
    }

    fn of(field: &str, message: &str) -> FieldError {
        FieldError {
            field: match field {
                "name" => "name",
                "email" => "email",
                "role" => "role",
                "password" => "password",
                _ => "",
            },
            message: capitalised(message),
        }
    }

    /// The message of the error about `field`, if any.
    fn find<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
        errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }
}

async fn person(state: &AppState, admin: &AdminPage, id: UserId) -> Result<User, PageError> {
    state.app.user(&admin.access, id).await?.ok_or(PageError::NotFound)
}

pub async fn change_role(
    State(state): State<AppState>,
    id: Result<Path<UserId>, PathRejection>,
    form: AdminForm,
) -> PageResult {
    let AdminForm { admin, fields } = form;
    let user = person(&state, &admin, record_id(id)?).await?;
    let role = Role::parse(fields.text("role")).map_err(|i| PageError::Refused(vec![capitalised(&i.description)]))?;
    let patch = UserPatch {
        role: Some(role),
        ..Default::default()
    };
    state.app.update_user(&admin.access, user.id, &patch).await?;
    Ok(done("role", user.id).into_response())
}

/// `GET /admin/people/{id}/role?to=…`: the confirmation of a role change
/// (Edit leads here when the role changes); it posts to [`change_role`].
pub async fn confirm_role(
    State(state): State<AppState>,
    admin: AdminPage,
    id: Result<Path<UserId>, PathRejection>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let user = person(&state, &admin, record_id(id)?).await?;
    let to = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "to")
        .and_then(|(_, v)| Role::parse(&v).ok())
        .ok_or(PageError::NotFound)?;
    let message = match to {
        Role::Admin => "An admin manages API tokens, people and the account's configuration.",
        Role::Agent => "An agent works in the help desk but cannot manage the account.",
        Role::EndUser => "An end user has no access to the help desk or the Admin Center.",
    };
    let subject = format!(
        "{} <{}>: {} \u{2192} {}",
        user.name,
        user.email,
        role_label(user.role),
        role_label(to)
    );
    Ok(render(
        StatusCode::OK,
        &ConfirmTemplate {
            l: admin.layout(Nav::People),
            c: Confirm {
                title: "Change role?",
                message,
                button: "Change role",
                danger: to == Role::Admin || user.role == Role::Admin,
            },
            subject: &subject,
            action_url: format!("{LIST}/{}/role", user.id),
            cancel_url: LIST,
            fields: vec![("role", to.as_str().to_owned())],
        },
    ))
}

#[derive(Template)]
#[template(path = "person_edit.html")]
struct EditTemplate<'a> {
    l: Layout,
    id: UserId,
    name: &'a str,
    email: &'a str,
    role: &'a str,
    verified: bool,
    is_you: bool,
    roles: &'static [(&'static str, &'static str)],
    errors: Vec<FieldError>,
}

impl EditTemplate<'_> {
    fn error(&self, field: &str) -> Option<&str> {
        FieldError::find(&self.errors, field)
    }
}

/// `GET /admin/people/{id}/edit`.
pub async fn edit(
    State(state): State<AppState>,
    admin: AdminPage,
    id: Result<Path<UserId>, PathRejection>,
) -> PageResult {
    let user = person(&state, &admin, record_id(id)?).await?;
    Ok(render(
        StatusCode::OK,
        &EditTemplate {
            l: admin.layout(Nav::People),
            id: user.id,
            name: &user.name,
            email: user.email.as_str(),
            role: user.role.as_str(),
            verified: user.verified,
            is_you: user.id == admin.user().id,
            roles: ROLES.as_slice(),
            errors: Vec::new(),
        },
    ))
}

/// `POST /admin/people/{id}/edit`: the name, the email, verified and a new
/// password (when one is typed) are saved; a new role goes on to its
/// confirmation. The name, email and verified change in one transaction,
/// audited as one event; a refused field saves nothing.
pub async fn update(
    State(state): State<AppState>,
    id: Result<Path<UserId>, PathRejection>,
    form: AdminForm,
) -> PageResult {
    let AdminForm { admin, mut fields } = form;
    let user = person(&state, &admin, record_id(id)?).await?;
    let is_you = user.id == admin.user().id;
    let password = fields.take("password");
    let (name, email, role) = (fields.text("name"), fields.text("email"), fields.text("role"));
    // Your own role and verified state are not yours to change here.
    let verified = if is_you {
        user.verified
    } else {
        fields.checked("verified")
    };
    let refused = |errors: Vec<FieldError>| {
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &EditTemplate {
                l: admin.layout(Nav::People),
                id: user.id,
                name,
                email,
                role: if is_you { user.role.as_str() } else { role },
                verified,
                is_you,
                roles: ROLES.as_slice(),
                errors,
            },
        )
    };
    let (n, e) = (parse_user_name(name), Email::parse(email));
    let r = if is_you { Ok(user.role) } else { Role::parse(role) };
    let (Ok(n), Ok(e), Ok(r)) = (&n, &e, &r) else {
        return Ok(refused(FieldError::all([n.err(), e.err(), r.err()])));
    };
    let patch = UserPatch {
        name: Some(n.clone()),
        email: Some(e.clone()),
        verified: Some(verified),
        ..Default::default()
    };
    match state.app.update_user(&admin.access, user.id, &patch).await {
        Ok(_) => {}
        Err(AppError::Domain(DomainError::Invalid(list))) => return Ok(refused(field_errors(&list))),
        Err(e) => return Err(e.into()),
    }
    if !password.is_empty() {
        let secret = latchkey_app::password::SecretString::from(password);
        state.app.set_password(&admin.access, user.id, secret).await?;
    }
    if *r != user.role {
        return Ok(Redirect::to(&format!("{LIST}/{}/role?to={}", user.id, r.as_str())).into_response());
    }
    Ok(done("updated", user.id).into_response())
}

/// A change to a user that needs confirming: the last path segment of
/// `/admin/people/{id}/{action}`, parsed by the path extractor (any other
/// segment is a 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Suspend,
    Unsuspend,
    Delete,
}

impl Action {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Suspend => "suspend",
            Action::Unsuspend => "unsuspend",
            Action::Delete => "delete",
        }
    }
}

/// The words of a user action's confirmation, on its page and in the dialog.
fn confirmation(action: Action) -> Confirm {
    let (title, message, button, danger) = match action {
        Action::Suspend => (
            "Suspend user?",
            "A suspended user cannot sign in or use API tokens until unsuspended.",
            "Suspend",
            true,
        ),
        Action::Unsuspend => (
            "Unsuspend user?",
            "The user can sign in and use API tokens again.",
            "Unsuspend",
            false,
        ),
        Action::Delete => (
            "Delete user?",
            "The user can no longer sign in or authenticate. Tokens they created keep working.",
            "Delete",
            true,
        ),
    };
    Confirm {
        title,
        message,
        button,
        danger,
    }
}

/// The confirmations the people list's rows carry.
pub struct PeopleConfirms {
    pub suspend: Confirm,
    pub unsuspend: Confirm,
    pub delete: Confirm,
}

fn people_confirms() -> PeopleConfirms {
    PeopleConfirms {
        suspend: confirmation(Action::Suspend),
        unsuspend: confirmation(Action::Unsuspend),
        delete: confirmation(Action::Delete),
    }
}

pub async fn confirm(
    State(state): State<AppState>,
    admin: AdminPage,
    path: Result<Path<(UserId, Action)>, PathRejection>,
) -> PageResult {
    let (id, action) = action_path(path)?;
    let c = confirmation(action);
    let user = person(&state, &admin, id).await?;
    let subject = format!("{} <{}> ({})", user.name, user.email, role_label(user.role));
    Ok(render(
        StatusCode::OK,
        &ConfirmTemplate {
            l: admin.layout(Nav::People),
            c,
            subject: &subject,
            action_url: format!("{LIST}/{}/{}", user.id, action.as_str()),
            cancel_url: LIST,
            fields: Vec::new(),
        },
    ))
}

pub async fn act(
    State(state): State<AppState>,
    path: Result<Path<(UserId, Action)>, PathRejection>,
    form: AdminForm,
) -> PageResult {
    let (id, action) = action_path(path)?;
    let admin = form.admin;
    let user = person(&state, &admin, id).await?;
    let suspend = |suspended| UserPatch {
        suspended: Some(suspended),
        ..Default::default()
    };
    let done = match action {
        Action::Suspend => {
            state.app.update_user(&admin.access, user.id, &suspend(true)).await?;
            "suspended"
        }
        Action::Unsuspend => {
            state.app.update_user(&admin.access, user.id, &suspend(false)).await?;
            "unsuspended"
        }
        Action::Delete => {
            state.app.delete_user(&admin.access, user.id).await?;
            "deleted"
        }
    };
    Ok(self::done(done, user.id).into_response())
}
