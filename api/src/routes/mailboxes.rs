//! An account's mailboxes, the same ones its IMAP clients see: the special
//! ones every account has (INBOX, Sent, Drafts, Archive, Junk, Trash) and
//! its own. Like its mail, only the account itself reads and changes them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mail::append::{Append, AppendRefused};
use serde::{Deserialize, Serialize};
use tenants::store::MailboxCounts;
use tenants::{AccountId, Actor, Flag, Mailbox, MailboxId, MessageId};
use utoipa::{IntoParams, ToSchema};

use super::messages::owner_only;
use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Bytes, Json, Path, Problem, ProblemDetails, Query};

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

/// The flags a message is put in a mailbox with.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppendQuery {
    #[serde(default)]
    pub seen: bool,
    #[serde(default)]
    pub flagged: bool,
    #[serde(default)]
    pub answered: bool,
    /// A draft (`\Draft`), as a mail app saves one in Drafts.
    #[serde(default)]
    pub draft: bool,
}

/// What was put in the mailbox.
#[derive(Serialize, ToSchema)]
pub struct AppendedMessage {
    pub message_id: MessageId,
    /// Its IMAP UID in the mailbox.
    pub uid: i64,
}

/// Put a message in a mailbox
///
/// The account's own message (`message/rfc822`), kept as IMAP APPEND keeps
/// one: at the account's level, sealed to its key before anything is
/// written at `sealed` and above; at `end-to-end` only an
/// OpenPGP-encrypted message is taken (a web app encrypts its drafts on the
/// device). Counted in the storage quota. Nothing is sent.
#[utoipa::path(post, path = "/v1/mailboxes/{mailbox_id}/messages", tag = "messages", operation_id = "appendMessage",
    params(("mailbox_id" = MailboxId, Path, description = "Mailbox id"), AppendQuery),
    request_body(content = String, content_type = "message/rfc822"),
    responses(
        (status = 201, description = "Stored", body = AppendedMessage),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such mailbox", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Storage quota exhausted", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not `message/rfc822`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not a message, or plaintext at `end-to-end`", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn append_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(mailbox_id): Path<MailboxId>,
    Query(query): Query<AppendQuery>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<(StatusCode, Json<AppendedMessage>)> {
    let mailbox = load(&state, &actor, mailbox_id).await?;
    if super::messages::media_type(&headers) != "message/rfc822" {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the Content-Type must be `message/rfc822`: the whole message, as it is kept",
        ));
    }
    let account = state
        .store
        .account(mailbox.account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    let mut flags = Vec::new();
    for (on, flag) in [
        (query.seen, Flag::Seen),
        (query.flagged, Flag::Flagged),
        (query.answered, Flag::Answered),
        (query.draft, Flag::Draft),
    ] {
        if on {
            flags.push(flag);
        }
    }
    let appended = state
        .inbound
        .append(Append {
            account: &account,
            mailbox: &mailbox,
            message: body.to_vec(),
            flags,
            keywords: Vec::new(),
            received_at: None,
            // Behind a proxy the API cannot tell how the request came.
            over_tls: false,
        })
        .await
        .map_err(|refused| match refused {
            AppendRefused::Store(e) => Problem::from(e),
            AppendRefused::NotAMessage | AppendRefused::PlaintextAtEndToEnd => {
                Problem::invalid(refused.to_string())
            }
            AppendRefused::TenantGone => Problem::not_found("tenant"),
            AppendRefused::Unavailable => Problem::unavailable(refused.to_string()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(AppendedMessage {
            message_id: appended.id,
            uid: appended.uid,
        }),
    ))
}
