//! Spam filtering as accounts and operators see it: an account's own rules
//! about senders (what moving mail into or out of Junk writes, and what the
//! next verdict uses), and outbound abuse, the operator's list of accounts
//! the filter refused, some of which lost sending.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenants::store::{AbuseEntry, SenderRuleEntry};
use tenants::{AccountId, Role, SenderRule};
use utoipa::ToSchema;

use super::device::own;
use crate::AppState;
use crate::auth::{Admin, Principal};
use crate::problem::{ApiResult, Json, Problem, ProblemDetails};

#[derive(Serialize, ToSchema)]
pub struct SenderRuleList {
    pub items: Vec<SenderRuleEntry>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSenderRule {
    /// An address (`someone@example.com`) or a whole domain (`example.com`).
    #[schema(example = "newsletter@shop.example")]
    pub sender: String,
    /// `block`: mail from it goes to Junk; `allow`: to the Inbox, unless
    /// the filter refuses it outright (a virus, spam beyond doubt).
    pub rule: SenderRule,
}

/// List the account's sender rules
///
/// Moving a message into Junk blocks its sender; moving one out of Junk
/// allows it. The next message's verdict uses these rules, at every level.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/sender-rules", tag = "accounts", operation_id = "listSenderRules",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account's rules, by sender", body = SenderRuleList),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_sender_rules(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<Json<SenderRuleList>> {
    own(&actor, account_id, "see its sender rules")?;
    Ok(Json(SenderRuleList {
        items: state.store.sender_rules(account_id).await?,
    }))
}

/// Block or allow a sender
///
/// Sets the account's rule for an address or a domain (replacing any rule
/// it had for the same sender).
#[utoipa::path(put, path = "/v1/accounts/{account_id}/sender-rules", tag = "accounts", operation_id = "setSenderRule",
    params(("account_id" = AccountId, Path, description = "Account id")),
    request_body = SetSenderRule,
    responses(
        (status = 200, description = "The rule as kept", body = SenderRuleEntry),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Too many rules", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not an address or a domain, or not a rule", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn set_sender_rule(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path(account_id): Path<AccountId>,
    Json(body): Json<SetSenderRule>,
) -> ApiResult<Json<SenderRuleEntry>> {
    own(&actor, account_id, "set its sender rules")?;
    Ok(Json(
        state
            .store
            .set_sender_rule(account_id, &body.sender, body.rule)
            .await?,
    ))
}

/// Remove a sender rule
#[utoipa::path(delete, path = "/v1/accounts/{account_id}/sender-rules/{sender}", tag = "accounts", operation_id = "deleteSenderRule",
    params(
        ("account_id" = AccountId, Path, description = "Account id"),
        ("sender" = String, Path, description = "The address or domain of the rule"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the account's owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or no rule for this sender", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Not an address or a domain", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_sender_rule(
    State(state): State<AppState>,
    Principal(actor): Principal,
    Path((account_id, sender)): Path<(AccountId, String)>,
) -> ApiResult<StatusCode> {
    own(&actor, account_id, "remove its sender rules")?;
    if state.store.delete_sender_rule(account_id, &sender).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("sender rule"))
    }
}

#[derive(Serialize, ToSchema)]
pub struct AbuseReport {
    /// Accounts refused in the last seven days or without sending, those
    /// without sending first.
    pub items: Vec<AbuseEntry>,
    /// Refusals in 24 hours after which an account loses sending (0: never).
    pub outbound_strikes: u32,
}

/// Outbound abuse
///
/// Accounts whose submissions the content filter refused lately, with the
/// reasons; those that reached `filter.outbound_strikes` in a day send
/// nothing until the operator clears them.
#[utoipa::path(get, path = "/v1/abuse", tag = "system", operation_id = "listAbuse",
    responses(
        (status = 200, description = "Refused accounts", body = AbuseReport),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_abuse(
    State(state): State<AppState>,
    Admin(actor): Admin,
) -> ApiResult<Json<AbuseReport>> {
    if actor.role != Role::Operator {
        return Err(Problem::forbidden("only the operator sees outbound abuse"));
    }
    Ok(Json(AbuseReport {
        items: state.store.abuse(7).await?,
        outbound_strikes: state
            .inbound
            .filter()
            .map_or(0, |f| f.config().outbound_strikes),
    }))
}

/// Give sending back
///
/// The operator looked: the account sends again, and its refusals so far
/// no longer count.
#[utoipa::path(delete, path = "/v1/abuse/{account_id}", tag = "system", operation_id = "clearAbuse",
    params(("account_id" = AccountId, Path, description = "Account id")),
    responses(
        (status = 204, description = "Sending restored"),
        (status = 400, description = "Malformed id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not the operator", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn clear_abuse(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(account_id): Path<AccountId>,
) -> ApiResult<StatusCode> {
    if actor.role != Role::Operator {
        return Err(Problem::forbidden(
            "only the operator gives sending back after abuse",
        ));
    }
    state
        .store
        .clear_abuse(&actor.audit_name(), account_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
