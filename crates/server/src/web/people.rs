//! `/admin/people`: the account's users, adding one (name, email, role,
//! verified), changing a role, suspending and deleting. Every change goes
//! through the service layer with the admin's access.

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
    DomainError,
};
use serde::Deserialize;
use strum::IntoEnumIterator;

use super::page::{domain_messages, render, show_time, Confirm, Layout, Nav, PageError, PageResult};
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

fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match done.as_str() {
        "added" => "User added.",
        "role" => "Role changed.",
        "suspended" => "User suspended.",
        "unsuspended" => "User unsuspended.",
        "deleted" => "User deleted.",
        _ => return None,
    })
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
    roles: &'static [(&'static str, &'static str)],
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
    let next = has_more.then(|| users.last().map(|u| u.id)).flatten();
    let people = users
        .into_iter()
        .map(|u| PersonView {
            id: u.id,
            role: u.role.as_str(),
            role_label: role_label(u.role),
            verified: u.verified,
            suspended: u.suspended,
            created: show_time(u.created_at),
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
            roles: ROLES.as_slice(),
            next,
            notice: notice(query.as_deref()),
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
    errors: Vec<String>,
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
    let refused = |errors: Vec<String>| {
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
        let errors = [n.err(), e.err(), r.err()]
            .into_iter()
            .flatten()
            .map(|i| i.description)
            .collect();
        return Ok(refused(errors));
    };
    let new = NewUser {
        name: n.clone(),
        email: e.clone(),
        role: *r,
        verified,
        password_hash: None,
    };
    match state.app.create_user(&admin.access, new).await {
        Ok(_) => Ok(Redirect::to(&format!("{LIST}?done=added")).into_response()),
        Err(AppError::Domain(d @ DomainError::Invalid(_))) => Ok(refused(domain_messages(&d))),
        Err(e) => Err(e.into()),
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
    let role = Role::parse(fields.text("role")).map_err(|i| PageError::Refused(vec![i.description]))?;
    let patch = UserPatch {
        role: Some(role),
        ..Default::default()
    };
    state.app.update_user(&admin.access, user.id, &patch).await?;
    Ok(Redirect::to(&format!("{LIST}?done=role")).into_response())
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
    Ok(Redirect::to(&format!("{LIST}?done={done}")).into_response())
}
