//! Mail, for the account that owns it: what it received, what it sends and
//! how delivery went. Administrators manage accounts, not their mail: these
//! routes answer only the account itself.
//! What the server shows depends on the level: subject and sender exist for
//! `standard` messages only; above, the raw form is the PGP/MIME message
//! that only the recipient's key opens.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use mail::outbound::{Draft, Refusal};
use serde::{Deserialize, Serialize};
use tenants::store::{RecipientDelivery, StoredContent};
use tenants::{AccountId, Actor, Flag, Folder, Level, MailboxId, MessageId, MessageMeta};
use utoipa::{IntoParams, ToSchema};

use super::Paged;
use crate::AppState;
use crate::auth::Principal;
use crate::problem::{ApiResult, Bytes, Json, Path, Problem, ProblemDetails, Query};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageListQuery {
    /// Only the mailbox of this special use.
    pub folder: Option<Folder>,
    /// Only this mailbox.
    pub mailbox_id: Option<MailboxId>,
    /// `oldest` first (the default) or `newest` first, as a mail app lists
    /// them; the cursor goes on in the same order.
    #[param(inline)]
    pub order: Option<ListOrder>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListOrder {
    Oldest,
    Newest,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMessage {
    /// Move it to the account's mailbox of this special use.
    pub folder: Option<Folder>,
    /// Move it to this mailbox of the account (not with `folder`).
    pub mailbox_id: Option<MailboxId>,
    /// The complete new set of flags.
    pub flags: Option<Vec<Flag>>,
    /// The complete new set of keywords (IMAP atoms such as `$Forwarded`).
    pub keywords: Option<Vec<String>>,
}

/// The media type a request says its body is, lowercase, without
/// parameters; empty when it says none.
pub(super) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub(super) fn owner_only(actor: &Actor, account: AccountId) -> ApiResult<()> {
    if actor.is_account(account) {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "only the account itself reads and files its mail",
        ))
    }
}

async fn load(state: &AppState, actor: &Actor, id: MessageId) -> ApiResult<MessageMeta> {
    let message = state
        .store
        .message(id)
        .await?
        .ok_or(Problem::not_found("message"))?;
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
    let page = super::PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let messages = state
        .store
        .list_messages_in_order(
            account_id,
            query.folder,
            query.mailbox_id,
            page,
            query.order == Some(ListOrder::Newest),
        )
        .await?;
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
/// message that the account's OpenPGP key decrypts to the original, its
/// Content-Type marked `protected-headers="v1"` (its own Subject, From, To,
/// Date and Message-ID are the ones to show; the wrapper's Subject is `...`).
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
    let stored =
        match state
            .store
            .message_content(message_id)
            .await?
            .ok_or(Problem::not_found("message"))?
        {
            StoredContent::Inline(bytes) => bytes,
            StoredContent::Dispersed => state.inbound.read_dispersed(message_id).await.map_err(
                |_| {
                    Problem::unavailable(
                        "too few storage sites answered to rebuild this message; try again later",
                    )
                },
            )?,
        };
    let body = match message.level {
        Level::Standard => state
            .inbound
            .decrypt_standard(message.tenant_id, message.id, &stored)
            .await
            .map_err(Problem::internal)?,
        Level::Sealed | Level::Dispersed | Level::EndToEnd => stored,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    ))
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
    let (mailbox, role) = match (body.folder, body.mailbox_id) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid("give `folder` or `mailbox_id`, not both"));
        }
        (Some(folder), None) => (
            state
                .store
                .mailbox_of_role(message.account_id, folder)
                .await?
                .id,
            Some(folder),
        ),
        (None, Some(id)) => {
            let target = state.store.mailbox(id).await?;
            (id, target.and_then(|m| m.role))
        }
        (None, None) => (message.mailbox_id, message.folder),
    };
    let flags = body.flags.unwrap_or_else(|| message.flags.clone());
    let keywords = body.keywords.unwrap_or_else(|| message.keywords.clone());
    let updated = state
        .store
        .update_message(&actor.audit_name(), &message, mailbox, &flags, &keywords)
        .await?;
    if mailbox != message.mailbox_id
        && let Some(spam) = tenants::judgement(message.folder, role)
    {
        state
            .inbound
            .judged(std::slice::from_ref(&message), spam)
            .await;
    }
    Ok(Json(updated))
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
    state
        .store
        .delete_message(&actor.audit_name(), &message)
        .await?;
    if let Some(dispersed) = state.inbound.dispersed() {
        // Crypto-shredding: the shards go now; what a down site keeps, the repair pass deletes.
        if let Err(e) = dispersed.shred(message_id.0).await {
            tracing::warn!(message = %message_id, error = %e, "shards not deleted yet");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A message to send, written as fields; the server builds the MIME.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitMessage {
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// Receive the message without appearing in its headers.
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// An HTML alternative to `text`.
    pub html: Option<String>,
    /// The `Message-ID` (`<id@host>`) of the message this answers, so that
    /// the reply threads in the recipient's mail client.
    pub in_reply_to: Option<String>,
    /// The conversation's `Message-ID`s, oldest first.
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<SubmitAttachment>,
    /// Refuse to send (nothing is queued) unless every recipient's OpenPGP
    /// key is known, so that no copy leaves in clear.
    #[serde(default)]
    pub require_encryption: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitAttachment {
    pub filename: String,
    /// e.g. `application/pdf`.
    pub media_type: String,
    /// The content, base64 (standard alphabet, padded).
    pub content_base64: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// For `message/rfc822` submissions: refuse unless every recipient's key is known.
    #[serde(default)]
    pub require_encryption: bool,
}

/// What was queued.
#[derive(Serialize, ToSchema)]
pub struct Submitted {
    /// The sender's Sent copy; ask `/v1/messages/{id}/delivery` how delivery goes.
    pub message_id: MessageId,
    /// The `Message-ID` header of what is sent.
    pub header_message_id: String,
    pub recipients: usize,
    /// Recipients who get an OpenPGP-encrypted copy.
    pub encrypted_to: Vec<String>,
}

/// Per-recipient delivery of a sent message.
#[derive(Serialize, ToSchema)]
pub struct DeliveryReport {
    pub message_id: MessageId,
    pub recipients: Vec<RecipientDelivery>,
}

fn refusal(r: Refusal) -> Problem {
    let detail = r.to_string();
    match r {
        Refusal::Invalid(_) => Problem::invalid(detail),
        Refusal::NotYourAddress(_) => {
            Problem::new(StatusCode::FORBIDDEN, "sender-not-allowed", detail)
        }
        Refusal::Suspended(_) => Problem::new(StatusCode::FORBIDDEN, "sending-suspended", detail),
        Refusal::PaymentOverdue(_) => {
            Problem::new(StatusCode::PAYMENT_REQUIRED, "payment-overdue", detail)
        }
        Refusal::RateLimited(_) => {
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
        }
        Refusal::Spam(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "refused-as-spam", detail)
        }
        Refusal::FilterUnavailable(_) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "try-again", detail)
        }
        Refusal::SendingBlocked(_) => {
            Problem::new(StatusCode::FORBIDDEN, "sending-suspended", detail)
        }
        Refusal::OverQuota(_) => Problem::new(StatusCode::CONFLICT, "limit-exceeded", detail),
        Refusal::PlaintextAtEndToEnd => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "encryption-required",
            detail,
        ),
        Refusal::MissingKeys(missing) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "recipient-keys-missing",
            detail,
        )
        .with_found(missing),
        Refusal::Internal => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "try-again", detail),
        Refusal::StorageUnavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            detail,
        ),
    }
}

fn mailbox(address: &str, what: &str) -> ApiResult<lettre::message::Mailbox> {
    address.trim().parse().map_err(|_| {
        Problem::invalid(format!(
            "`{address}` in `{what}` is not a valid email address"
        ))
    })
}

/// The RFC 5322 message a JSON submission describes, Bcc header kept (the
/// sender's copy shows it; what is sent does not). Always MIME: even plain
/// text says `MIME-Version: 1.0` and its charset, or a reader would guess
/// (RFC 2045 §5.2 says US-ASCII).
/// A `Message-ID` as given in `field`: `<left@right>`, printable, no space.
fn message_id(given: &str, field: &str) -> ApiResult<String> {
    let id = given.trim();
    let inner = id.strip_prefix('<').and_then(|i| i.strip_suffix('>'));
    match inner {
        Some(inner)
            if id.len() <= 250
                && inner
                    .split_once('@')
                    .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
                && inner
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !"<>\\\"".contains(c)) =>
        {
            Ok(id.to_owned())
        }
        _ => Err(Problem::invalid(format!(
            "`{field}`: {given:?} is not a Message-ID like `<id@host>`"
        ))),
    }
}

fn compose(account: &tenants::Account, m: &SubmitMessage) -> ApiResult<Vec<u8>> {
    use lettre::message::{Attachment, MultiPart, SinglePart, header::ContentType};
    let mut builder = lettre::Message::builder()
        .keep_bcc()
        .subject(m.subject.clone());
    let from = if account.display_name.is_empty() {
        mailbox(account.address.as_str(), "from")?
    } else {
        lettre::message::Mailbox::new(
            Some(account.display_name.clone()),
            mailbox(account.address.as_str(), "from")?.email,
        )
    };
    builder = builder.from(from);
    if let Some(id) = &m.in_reply_to {
        builder = builder.in_reply_to(message_id(id, "in_reply_to")?);
    }
    if !m.references.is_empty() {
        let ids = m
            .references
            .iter()
            .map(|id| message_id(id, "references"))
            .collect::<ApiResult<Vec<String>>>()?;
        builder = builder.references(ids.join(" "));
    }
    for to in &m.to {
        builder = builder.to(mailbox(to, "to")?);
    }
    for cc in &m.cc {
        builder = builder.cc(mailbox(cc, "cc")?);
    }
    for bcc in &m.bcc {
        builder = builder.bcc(mailbox(bcc, "bcc")?);
    }
    let alternative =
        |html: &String| MultiPart::alternative_plain_html(m.text.clone(), html.clone());
    let message = match (&m.html, m.attachments.as_slice()) {
        (None, []) => builder.singlepart(SinglePart::plain(m.text.clone())),
        (Some(html), []) => builder.multipart(alternative(html)),
        (html, attachments) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(alternative(html)),
                None => MultiPart::mixed().singlepart(SinglePart::plain(m.text.clone())),
            };
            for a in attachments {
                let content = base64::engine::general_purpose::STANDARD
                    .decode(a.content_base64.trim())
                    .map_err(|e| {
                        Problem::invalid(format!(
                            "attachment `{}`: content_base64 is not base64: {e}",
                            a.filename
                        ))
                    })?;
                let media_type = ContentType::parse(&a.media_type).map_err(|_| {
                    Problem::invalid(format!(
                        "attachment `{}`: `{}` is not a media type",
                        a.filename, a.media_type
                    ))
                })?;
                mixed =
                    mixed.singlepart(Attachment::new(a.filename.clone()).body(content, media_type));
            }
            builder.multipart(mixed)
        }
    };
    message
        .map(|m| m.formatted())
        .map_err(|e| Problem::invalid(format!("the message cannot be built: {e}")))
}

/// Send a message
///
/// Either fields (`application/json`: the server writes the MIME) or a
/// complete message (`message/rfc822`: recipients are read from its `To`,
/// `Cc` and `Bcc`, and the `Bcc` header is removed before sending). The
/// `From` must be the account's address. Answers once the message is stored
/// and queued; a copy goes to Sent at the account's level. At `end-to-end`
/// only OpenPGP-encrypted messages are accepted; at `sealed` and above the
/// server encrypts to every recipient whose key it knows, and
/// `require_encryption` refuses the message (nothing queued) when a key is
/// missing, listing who in `found`.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/messages", tag = "messages", operation_id = "sendMessage",
    params(("account_id" = AccountId, Path, description = "Account id"), SubmitQuery),
    request_body(content(
        (SubmitMessage = "application/json"),
        (String = "message/rfc822"),
    )),
    responses(
        (status = 202, description = "Queued", body = Submitted),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner, a `From` it does not own, or sending suspended", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Storage quota exhausted", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "The Content-Type is neither `application/json` nor `message/rfc822`, or missing", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid message, plaintext at end-to-end, or recipient keys missing", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "A sending rate is used up", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn send_message(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    owner_only(&actor, account_id)?;
    let account = state
        .store
        .account(account_id)
        .await?
        .ok_or(Problem::not_found("account"))?;
    let draft = match media_type(&headers).as_str() {
        "application/json" => {
            let m: SubmitMessage = serde_json::from_slice(&body).map_err(|e| {
                if e.is_data() {
                    Problem::invalid(e.to_string())
                } else {
                    Problem::bad_request(e.to_string())
                }
            })?;
            if m.to.is_empty() && m.cc.is_empty() && m.bcc.is_empty() {
                return Err(Problem::invalid(
                    "the message has no recipients: give at least one address in `to`, `cc` or `bcc`",
                ));
            }
            let message = compose(&account, &m)?;
            let recipients =
                m.to.iter()
                    .chain(&m.cc)
                    .chain(&m.bcc)
                    .map(|r| r.trim().to_owned())
                    .collect();
            Draft {
                account,
                recipients,
                message,
                require_encryption: m.require_encryption,
            }
        }
        "message/rfc822" => {
            let recipients = mail::outbound::header_recipients(&body);
            Draft {
                account,
                recipients,
                message: body.to_vec(),
                require_encryption: query.require_encryption,
            }
        }
        other => {
            let sent = match other {
                "" => "none".to_owned(),
                other => format!("`{other}`"),
            };
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!(
                    "the Content-Type must be `application/json` (fields) or `message/rfc822` (a whole message), not {sent}"
                ),
            ));
        }
    };
    let submitted = state.outbound.submit(draft).await.map_err(refusal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Submitted {
            message_id: submitted.message_id,
            header_message_id: submitted.header_message_id,
            recipients: submitted.recipients,
            encrypted_to: submitted.encrypted_to,
        }),
    ))
}

/// Recipients to look up keys for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientKeysRequest {
    /// At most 50 addresses.
    pub addresses: Vec<String>,
}

/// Where a recipient's key was found.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// An account hosted here.
    Hosted,
    /// The recipient domain's Web Key Directory, fetched by the server.
    Directory,
}

/// One recipient's key, as sending would find it.
#[derive(Serialize, ToSchema)]
pub struct RecipientKey {
    pub address: String,
    /// The ASCII-armored OpenPGP public key; `null` when none is known, so
    /// that mail to this address would leave unencrypted.
    pub key: Option<String>,
    pub source: Option<KeySource>,
}

#[derive(Serialize, ToSchema)]
pub struct RecipientKeys {
    /// In the order asked.
    pub keys: Vec<RecipientKey>,
}

/// Most addresses one key lookup takes.
const MAX_LOOKUPS: usize = 50;

/// Recipients' OpenPGP keys, as sending would find them
///
/// For each address, the key the server would encrypt to: an account hosted
/// here, else what the recipient domain's Web Key Directory serves (fetched
/// by the server, so the recipient's domain learns nothing of the writer).
/// What a mail app shows per recipient before sending ("will be
/// encrypted"), and what an `end-to-end` account encrypts to on its device.
/// Only the account itself may ask.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/recipient-keys", tag = "messages", operation_id = "lookupRecipientKeys",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = RecipientKeysRequest,
    responses(
        (status = 200, description = "One entry per address, in order", body = RecipientKeys),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "An address that is not one, or too many", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn recipient_keys(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(request): Json<RecipientKeysRequest>,
) -> ApiResult<Json<RecipientKeys>> {
    owner_only(&actor, account_id)?;
    if request.addresses.len() > MAX_LOOKUPS {
        return Err(Problem::invalid(format!(
            "{} addresses asked for; at most {MAX_LOOKUPS} are looked up at once",
            request.addresses.len()
        )));
    }
    let mut addresses = Vec::with_capacity(request.addresses.len());
    for raw in &request.addresses {
        let address = tenants::EmailAddress::parse(raw.trim())
            .map_err(|_| Problem::invalid(format!("`{raw}` is not an email address")))?;
        addresses.push(address.to_string());
    }
    // Looked up side by side: a Web Key Directory may take seconds to answer.
    let mut lookups = tokio::task::JoinSet::new();
    for (i, address) in addresses.iter().enumerate() {
        let (outbound, address) = (state.outbound.clone(), address.clone());
        lookups.spawn(async move { (i, outbound.find_key(&address).await) });
    }
    let mut found = vec![None; addresses.len()];
    while let Some(done) = lookups.join_next().await {
        let (i, key) = done.map_err(|e| Problem::internal(format!("key lookup: {e}")))?;
        found[i] = key;
    }
    let keys = addresses
        .into_iter()
        .zip(found)
        .map(|(address, found)| RecipientKey {
            address,
            source: found.as_ref().map(|k| match k.source {
                mail::wkd::KeySource::Hosted => KeySource::Hosted,
                mail::wkd::KeySource::Directory => KeySource::Directory,
            }),
            key: found.map(|k| k.armored),
        })
        .collect();
    Ok(Json(RecipientKeys { keys }))
}

/// How delivery of a sent message goes
///
/// One entry per recipient: `queued`, `deferred` (with the remote server's
/// reply; retried), `delivered` or `bounced` (a DSN is in the Inbox).
#[utoipa::path(get, path = "/v1/messages/{message_id}/delivery", tag = "messages", operation_id = "getDelivery",
    params(("message_id" = MessageId, Path, description = "The Sent copy's id")),
    responses(
        (status = 200, description = "Per-recipient status", body = DeliveryReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delivery(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(message_id): Path<MessageId>,
) -> ApiResult<Json<DeliveryReport>> {
    let message = load(&state, &actor, message_id).await?;
    let recipients = state.store.message_deliveries(message.id).await?;
    Ok(Json(DeliveryReport {
        message_id: message.id,
        recipients,
    }))
}
