//! Received mail, for the account that owns it. Administrators manage
//! accounts, not their mail: these routes answer only the account itself.
//! What the server shows depends on the level: subject and sender exist for
//! `standard` messages only; above, the raw form is the PGP/MIME message
//! that only the recipient's key opens.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use tenants::{AccountId, Actor, Flag, Folder, Level, MessageId, MessageMeta};
use utoipa::{IntoParams, ToSchema};

use super::Paged;
use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Json, Path, Problem, ProblemDetails, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageListQuery {
    /// Only this folder.
    pub folder: Option<Folder>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMessage {
    pub folder: Option<Folder>,
    /// The complete new set of flags.
    pub flags: Option<Vec<Flag>>,
}

fn owner_only(actor: &Actor, account: AccountId) -> ApiResult<()> {
    if actor.is_account(account) {
        Ok(())
    } else {
        Err(Problem::forbidden("only the account itself reads and files its mail"))
    }
}

async fn load(state: &AppState, actor: &Actor, id: MessageId) -> ApiResult<MessageMeta> {
    let message = state.store.message(id).await?.ok_or(Problem::not_found("message"))?;
    owner_only(actor, message.account_id)?;
    Ok(message)
}

/// List an account's messages
#[utoipa::path(get, path = "/v1/accounts/{account_id}/messages", tag = "messages", operation_id = "listMessages",
    params(("account_id" = AccountId, Path, description = "Account id"), MessageListQuery),
    responses(
        (status = 200, description = "A page of message metadata, oldest first", body = Paged<MessageMeta>),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_messages(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Query(query): Query<MessageListQuery>,
) -> ApiResult<Json<Paged<MessageMeta>>> {
    owner_only(&actor, account_id)?;
    let page = super::PageQuery { limit: query.limit, cursor: query.cursor }.page()?;
    let messages = state.store.list_messages(account_id, query.folder, page).await?;
    Ok(Json(Paged::new(messages, page, |m| m.id.0)))
}

/// Get a message's metadata
///
/// The privacy index is computed on receipt from verified facts only:
/// `technic` (TLS 1.3 +25 or 1.2 +15, DKIM pass +15, SPF pass +10, DMARC pass
/// +10, OpenPGP-encrypted +30, signed +10), `context` (the account wrote to
/// the sender +60; received from them before +20, from the fifth message +20
/// more), `comportment` (sender's key known +40, plus 60 × the share of their
/// messages that arrived encrypted); `score` = (2 × technic + context +
/// comportment) / 4; grade A ≥ 80, B ≥ 60, C ≥ 40, D ≥ 20, else E.
#[utoipa::path(get, path = "/v1/messages/{message_id}", tag = "messages", operation_id = "getMessage",
    params(("message_id" = MessageId, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message's metadata", body = MessageMeta),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(message_id): Path<MessageId>,
) -> ApiResult<Json<MessageMeta>> {
    Ok(Json(load(&state, &actor, message_id).await?))
}

/// Get a message as stored
///
/// `standard` messages come back as the RFC 5322 message received (with our
/// trace headers). Sealed ones come back exactly as stored: a PGP/MIME
/// message that the account's OpenPGP key decrypts to the original bytes.
#[utoipa::path(get, path = "/v1/messages/{message_id}/raw", tag = "messages", operation_id = "getRawMessage",
    params(("message_id" = MessageId, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", body = String, content_type = "message/rfc822"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn raw_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(message_id): Path<MessageId>,
) -> ApiResult<impl IntoResponse> {
    let message = load(&state, &actor, message_id).await?;
    let stored = state.store.message_content(message_id).await?.ok_or(Problem::not_found("message"))?;
    let body = match message.level {
        Level::Standard => state
            .inbound
            .open_standard(message.tenant_id, message.id, &stored)
            .await
            .map_err(|reply| Problem::internal(reply))?,
        Level::Sealed | Level::Dispersed | Level::EndToEnd => stored,
    };
    Ok(([(header::CONTENT_TYPE, "message/rfc822"), (header::CACHE_CONTROL, "no-store")], body))
}

/// File a message or change its flags
#[utoipa::path(patch, path = "/v1/messages/{message_id}", tag = "messages", operation_id = "updateMessage",
    params(("message_id" = MessageId, Path, description = "Message id")),
    request_body = UpdateMessage,
    responses(
        (status = 200, description = "The updated message", body = MessageMeta),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(message_id): Path<MessageId>,
    Json(body): Json<UpdateMessage>,
) -> ApiResult<Json<MessageMeta>> {
    let message = load(&state, &actor, message_id).await?;
    let folder = body.folder.unwrap_or(message.folder);
    let flags = body.flags.unwrap_or_else(|| message.flags.clone());
    Ok(Json(state.store.update_message(&actor.audit_name(), &message, folder, &flags).await?))
}

/// Delete a message
///
/// Frees its bytes in the tenant's quota at once.
#[utoipa::path(delete, path = "/v1/messages/{message_id}", tag = "messages", operation_id = "deleteMessage",
    params(("message_id" = MessageId, Path, description = "Message id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(message_id): Path<MessageId>,
) -> ApiResult<StatusCode> {
    let message = load(&state, &actor, message_id).await?;
    state.store.delete_message(&actor.audit_name(), &message).await?;
    Ok(StatusCode::NO_CONTENT)
}
