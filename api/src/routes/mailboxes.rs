//! An account's mailboxes, the same ones its IMAP clients see: the special
//! ones every account has (INBOX, Sent, Drafts, Archive, Junk, Trash) and
//! its own. Like its mail, only the account itself reads and changes them.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::store::MailboxCounts;
use tenants::{AccountId, Actor, Mailbox, MailboxId};
use utoipa::ToSchema;

use super::messages::owner_only;
use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails};

/// A mailbox with what it holds.
#[derive(Serialize, ToSchema)]
pub struct MailboxView {
    #[serde(flatten)]
    pub mailbox: Mailbox,
    pub counts: MailboxCounts,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMailbox {
    /// `/` between levels; missing levels above are made too.
    #[schema(example = "Projects/2026")]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMailbox {
    /// A new name; the mailboxes under it follow.
    pub name: Option<String>,
    pub subscribed: Option<bool>,
}

async fn load(state: &AppState, actor: &Actor, id: MailboxId) -> ApiResult<Mailbox> {
    let mailbox = state
        .store
        .mailbox(id)
        .await?
        .ok_or(Problem::not_found("mailbox"))?;
    owner_only(actor, mailbox.account_id)?;
    Ok(mailbox)
}

async fn view(state: &AppState, mailbox: Mailbox) -> ApiResult<MailboxView> {
    let counts = state.store.mailbox_counts(mailbox.id).await?;
    Ok(MailboxView { mailbox, counts })
}

/// List an account's mailboxes
#[utoipa::path(get, path = "/v1/accounts/{account_id}/mailboxes", tag = "messages", operation_id = "listMailboxes",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "Every mailbox, INBOX first, then by name", body = Vec<MailboxView>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_mailboxes(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<Vec<MailboxView>>> {
    owner_only(&actor, account_id)?;
    let mut out = Vec::new();
    for mailbox in state.store.mailboxes(account_id).await? {
        out.push(view(&state, mailbox).await?);
    }
    Ok(Json(out))
}

/// Make a mailbox
#[utoipa::path(post, path = "/v1/accounts/{account_id}/mailboxes", tag = "messages", operation_id = "createMailbox",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = NewMailbox,
    responses(
        (status = 201, description = "Made", body = MailboxView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (whatever its case), or the account has as many mailboxes as it may (`limit-exceeded`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a usable name", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_mailbox(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<NewMailbox>,
) -> ApiResult<(StatusCode, Json<MailboxView>)> {
    owner_only(&actor, account_id)?;
    let mailbox = state
        .store
        .create_mailbox(&actor.audit_name(), account_id, &body.name, true)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, mailbox).await?)))
}

/// Rename a mailbox or (un)subscribe it
#[utoipa::path(patch, path = "/v1/mailboxes/{mailbox_id}", tag = "messages", operation_id = "updateMailbox",
    params(("mailbox_id" = MailboxId, Path, description = "Mailbox id")),
    request_body = UpdateMailbox,
    responses(
        (status = 200, description = "The mailbox now", body = MailboxView),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The new name is taken, or the levels it adds would pass the mailbox cap (`limit-exceeded`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a usable name", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_mailbox(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(mailbox_id): Path<MailboxId>,
    Json(body): Json<UpdateMailbox>,
) -> ApiResult<Json<MailboxView>> {
    let mut mailbox = load(&state, &actor, mailbox_id).await?;
    if let Some(name) = &body.name {
        mailbox = state
            .store
            .rename_mailbox(&actor.audit_name(), &mailbox, name)
            .await?;
    }
    if let Some(subscribed) = body.subscribed {
        state
            .store
            .subscribe_mailbox(mailbox.id, subscribed)
            .await?;
        mailbox.subscribed = subscribed;
    }
    Ok(Json(view(&state, mailbox).await?))
}

/// Delete a mailbox and its messages
///
/// The special mailboxes cannot be deleted. The messages' bytes are freed
/// in the tenant's quota at once.
#[utoipa::path(delete, path = "/v1/mailboxes/{mailbox_id}", tag = "messages", operation_id = "deleteMailbox",
    params(("mailbox_id" = MailboxId, Path, description = "Mailbox id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A special mailbox", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_mailbox(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(mailbox_id): Path<MailboxId>,
) -> ApiResult<StatusCode> {
    let mailbox = load(&state, &actor, mailbox_id).await?;
    let dispersed = state
        .store
        .delete_mailbox(&actor.audit_name(), &mailbox)
        .await?;
    if let Some(sites) = state.inbound.dispersed() {
        for id in dispersed {
            if let Err(e) = sites.shred(id.0).await {
                tracing::warn!(message = %id, error = %e, "shards not deleted yet");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
