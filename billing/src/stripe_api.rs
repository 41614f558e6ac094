//! The calls Caliop makes to Stripe, through async-stripe: its typed request
//! parameters (paths, form encoding), its client (secret key, Stripe-Version,
//! idempotency keys, retries), and small response types of our own holding
//! only what we use, so that a field Stripe adds or renames elsewhere in an
//! object never breaks a checkout.

use std::collections::HashMap;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_billing::subscription_item::{
    UpdateSubscriptionItem, UpdateSubscriptionItemProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;

#[derive(miniserde::Deserialize)]
struct Created {
    id: String,
}

#[derive(miniserde::Deserialize)]
struct Session {
    id: String,
    url: Option<String>,
}

#[derive(miniserde::Deserialize)]
struct Item {
    id: String,
    quantity: Option<u64>,
}

/// A Stripe account, reached at `api_base` (Stripe's, or a stand-in in tests).
pub struct StripeApi {
    client: Client,
}

fn idempotent(key: &str) -> Result<RequestStrategy, String> {
    Ok(RequestStrategy::Idempotent(
        IdempotencyKey::new(key).map_err(|e| format!("idempotency key: {e:?}"))?,
    ))
}

fn failed(what: &str) -> impl Fn(stripe::StripeError) -> String + '_ {
    move |e| format!("Stripe refused to {what}: {e}")
}

impl StripeApi {
    pub fn new(api_base: &str, secret_key: &str) -> Result<StripeApi, String> {
        let client = ClientBuilder::new(secret_key)
            .url(api_base)
            .app_info("Caliop", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| format!("the Stripe client: {e}"))?;
        Ok(StripeApi { client })
    }

    /// Makes the customer for a tenant; the tenant's id makes the call idempotent.
    pub async fn create_customer(
        &self,
        tenant: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, String> {
        let mut request = CreateCustomer::new().name(name).metadata(HashMap::from([(
            "caliop_tenant".to_owned(),
            tenant.to_owned(),
        )]));
        if let Some(email) = email {
            request = request.email(email);
        }
        let created: Created = request
            .build()
            .customize::<Created>()
            .request_strategy(idempotent(&format!("caliop-customer-{tenant}"))?)
            .send(&self.client)
            .await
            .map_err(failed("create the customer"))?;
        Ok(created.id)
    }

    /// A Checkout Session for a subscription of `seats` × `price`; returns its id and URL.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_checkout(
        &self,
        tenant: &str,
        customer: &str,
        price: &str,
        seats: u64,
        success_url: &str,
        cancel_url: &str,
        attempt: &str,
    ) -> Result<(String, String), String> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_owned());
        item.quantity = Some(seats);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        subscription.metadata = Some(HashMap::from([(
            "caliop_tenant".to_owned(),
            tenant.to_owned(),
        )]));
        let session: Session = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(customer)
            .client_reference_id(tenant)
            .line_items(vec![item])
            .subscription_data(subscription)
            .success_url(success_url)
            .cancel_url(cancel_url)
            .build()
            .customize::<Session>()
            .request_strategy(idempotent(&format!("caliop-checkout-{tenant}-{attempt}"))?)
            .send(&self.client)
            .await
            .map_err(failed("open a Checkout Session"))?;
        let url = session
            .url
            .ok_or_else(|| format!("Stripe's Checkout Session {} has no URL", session.id))?;
        Ok((session.id, url))
    }

    /// Sets the seats billed on a subscription item, prorated; returns the quantity Stripe now bills.
    pub async fn set_quantity(&self, item: &str, seats: u64, key: &str) -> Result<u64, String> {
        let updated: Item = UpdateSubscriptionItem::new(item)
            .quantity(seats)
            .proration_behavior(UpdateSubscriptionItemProrationBehavior::CreateProrations)
            .build()
            .customize::<Item>()
            .request_strategy(idempotent(key)?)
            .send(&self.client)
            .await
            .map_err(failed("change the seats"))?;
        tracing::debug!(item = %updated.id, "subscription item updated");
        Ok(updated.quantity.unwrap_or(seats))
    }
}
