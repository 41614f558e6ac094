//! The route list: every endpoint, registered once for both the router and
//! the OpenAPI document, plus what the handlers share (views, paging).

mod accounts;
mod activation;
mod api_keys;
mod audit;
mod auth;
mod device;
mod passkeys;
mod second_factor;
pub use device::{OpaqueSetups, PendingLogins};
pub use passkeys::PendingPasskeys;
mod billing;
pub(crate) mod branding;
mod certificates;
pub use branding::caliop_brand;
mod business;
mod domains;
mod exports;
mod filtering;
mod legal;
pub use legal::LEGAL_REGISTER_IS_THE_OPERATORS;
mod mailboxes;
mod messages;
mod queue;
mod reset;
mod sites;
mod system;
pub(crate) mod tenants;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::problem::Problem;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::issue_token))
        .routes(routes!(device::login_start))
        .routes(routes!(device::login_finish))
        .routes(routes!(device::register_start))
        .routes(routes!(device::register_finish))
        .routes(routes!(
            device::list_app_passwords,
            device::create_app_password
        ))
        .routes(routes!(device::revoke_app_password))
        .routes(routes!(
            filtering::list_sender_rules,
            filtering::set_sender_rule
        ))
        .routes(routes!(filtering::delete_sender_rule))
        .routes(routes!(business::list_addresses, business::create_address))
        .routes(routes!(
            business::get_address,
            business::update_address,
            business::delete_address
        ))
        .routes(routes!(
            business::get_domain_routing,
            business::set_domain_routing
        ))
        .routes(routes!(business::get_forwarding, business::set_forwarding))
        .routes(routes!(business::list_sieve_scripts))
        .routes(routes!(
            business::get_sieve_script,
            business::put_sieve_script,
            business::delete_sieve_script
        ))
        .routes(routes!(
            business::get_tenant_sieve,
            business::put_tenant_sieve,
            business::delete_tenant_sieve
        ))
        .routes(routes!(filtering::list_abuse))
        .routes(routes!(filtering::clear_abuse))
        .routes(routes!(reset::start_device_reset))
        .routes(routes!(reset::finish_device_reset))
        .routes(routes!(activation::get_activation))
        .routes(routes!(activation::start_activation))
        .routes(routes!(activation::finish_activation))
        .routes(routes!(activation::reset_to_activation))
        .routes(routes!(activation::previous_secret_key))
        .routes(routes!(passkeys::register_start))
        .routes(routes!(passkeys::register_finish))
        .routes(routes!(passkeys::list_passkeys))
        .routes(routes!(passkeys::delete_passkey))
        .routes(routes!(second_factor::enrol_totp))
        .routes(routes!(second_factor::confirm_totp))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(
            tenants::get_tenant,
            tenants::update_tenant,
            tenants::close_tenant
        ))
        .routes(routes!(tenants::onboard))
        .routes(routes!(exports::export_tenant))
        .routes(routes!(exports::list_exports))
        .routes(routes!(exports::download_export))
        .routes(routes!(domains::list_domains, domains::create_domain))
        .routes(routes!(domains::get_domain, domains::delete_domain))
        .routes(routes!(domains::dns_records))
        .routes(routes!(domains::dkim_keys))
        .routes(routes!(domains::rotate_dkim))
        .routes(routes!(domains::get_mta_sts, domains::set_mta_sts))
        .routes(routes!(domains::tls_reports))
        .routes(routes!(domains::verify_domain))
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(
            accounts::get_account,
            accounts::update_account,
            accounts::delete_account
        ))
        .routes(routes!(accounts::public_key))
        .routes(routes!(accounts::secret_key))
        .routes(routes!(accounts::end_other_sessions))
        .routes(routes!(messages::list_messages, messages::send_message))
        .routes(routes!(messages::recipient_keys))
        .routes(routes!(messages::delivery))
        .routes(routes!(
            messages::get_message,
            messages::update_message,
            messages::delete_message
        ))
        .routes(routes!(messages::raw_message))
        .routes(routes!(
            mailboxes::list_mailboxes,
            mailboxes::create_mailbox
        ))
        .routes(routes!(
            mailboxes::update_mailbox,
            mailboxes::delete_mailbox
        ))
        .routes(routes!(mailboxes::append_message))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(audit::tenant_audit))
        .routes(routes!(queue::queue))
        .routes(routes!(sites::list_sites))
        .routes(routes!(certificates::list_certificates))
        .routes(routes!(certificates::renew_certificate))
        .routes(routes!(sites::list_jurisdictions))
        .routes(routes!(billing::list_plans, billing::create_plan))
        .routes(routes!(
            billing::get_plan,
            billing::update_plan,
            billing::delete_plan
        ))
        .routes(routes!(billing::assign_plan))
        .routes(routes!(billing::get_billing))
        .routes(routes!(billing::checkout))
        .routes(routes!(billing::usage))
        .routes(routes!(billing::traffic))
        .routes(routes!(billing::pool_history))
        .routes(routes!(billing::stripe_webhook))
        .routes(routes!(billing::pool))
        .routes(routes!(billing::signup_challenge))
        .routes(routes!(billing::sign_up))
        .routes(routes!(billing::signup_status))
        .routes(routes!(billing::set_self_signup))
        .routes(routes!(branding::get_branding, branding::set_branding))
        .routes(routes!(branding::set_logo, branding::get_logo))
        .routes(routes!(branding::set_favicon))
        .routes(routes!(branding::public_branding))
        .routes(routes!(branding::public_logo))
        .routes(routes!(branding::public_favicon))
        .routes(routes!(branding::list_hostnames, branding::create_hostname))
        .routes(routes!(branding::verify_hostname))
        .routes(routes!(branding::delete_hostname))
        .routes(routes!(branding::list_templates))
        .routes(routes!(branding::set_template, branding::reset_template))
        .routes(routes!(branding::preview_template))
        .routes(routes!(
            legal::list_legal_requests,
            legal::create_legal_request
        ))
        .routes(routes!(legal::get_legal_request))
        .routes(routes!(legal::correct_legal_request))
        .routes(routes!(legal::tenant_transparency))
        .routes(routes!(legal::public_transparency))
        .routes(routes!(reset::request_reset))
        .routes(routes!(reset::export_before_reset, reset::reset_password))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
}

/// Paging parameters shared by every list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to return (1 to 200, default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<::tenants::Page, Problem> {
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        let limit = self.limit.unwrap_or(::tenants::Page::DEFAULT_LIMIT);
        if !(1..=::tenants::Page::MAX_LIMIT).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit must be between 1 and {}",
                ::tenants::Page::MAX_LIMIT
            )));
        }
        Ok(::tenants::Page { after, limit })
    }
}

fn decode_cursor(cursor: &str) -> Result<Uuid, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| Problem::bad_request("the cursor is not one this API returned"))
}

/// The cursor that continues after `last`, if the page was full.
pub fn next_cursor(len: usize, page: ::tenants::Page, last: Option<Uuid>) -> Option<String> {
    (len as u32 >= page.limit)
        .then_some(last)
        .flatten()
        .map(|id| URL_SAFE_NO_PAD.encode(id.as_bytes()))
}

/// A page of items and where the next one starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    pub fn new(items: Vec<T>, page: ::tenants::Page, id: impl Fn(&T) -> Uuid) -> Paged<T> {
        let cursor = next_cursor(items.len(), page, items.last().map(&id));
        Paged {
            items,
            next_cursor: cursor,
        }
    }
}
