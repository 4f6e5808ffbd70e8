//! Server functions of the Webhooks page: the caller's endpoints with their latest deliveries,
//! registering one, and the page's buttons (ping, retry a delivery, enable or pause, delete).
//! They go through the same `Webhooks` service and error mapping as the REST routes in
//! `server::routes::webhooks`; every change also checks that it comes from this server's pages.
use super::{CallError, Webhook, WebhookWithDeliveries};
use leptos::prelude::*;

/// Deliveries the page shows per endpoint.
pub const RECENT_DELIVERIES: u32 = 10;

/// The caller's endpoints, oldest first, each with its latest deliveries.
#[server(prefix = "/rpc", endpoint = "list_webhooks")]
pub async fn list_webhooks() -> Result<Vec<WebhookWithDeliveries>, CallError> {
    use super::Delivery;
    use crate::server::webhooks::endpoint_view;
    let (state, requester) = calls::reading().await?;
    let endpoints = state
        .webhooks
        .list(requester)
        .await
        .map_err(calls::refused)?;
    let mut listed = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let recent = state
            .webhooks
            .deliveries(requester, endpoint.id, RECENT_DELIVERIES)
            .await
            .map_err(calls::refused)?;
        listed.push(WebhookWithDeliveries {
            endpoint: endpoint_view(endpoint, false),
            recent: recent.into_iter().map(Delivery::from).collect(),
        });
    }
    Ok(listed)
}

/// Registers an endpoint for the caller's account; the answer holds its secret, shown once.
#[server(prefix = "/rpc", endpoint = "create_webhook")]
pub async fn create_webhook(
    url: String,
    events: Vec<String>,
    description: String,
) -> Result<Webhook, CallError> {
    use crate::server::webhooks::{endpoint_view, NewEndpoint};
    let (state, requester) = calls::changing().await?;
    let new = NewEndpoint {
        url,
        events,
        description: Some(description),
        all_accounts: false,
    };
    let endpoint = state
        .webhooks
        .create(requester, new)
        .await
        .map_err(calls::refused)?;
    Ok(endpoint_view(endpoint, true))
}

/// Queues a `webhook.ping` to the endpoint.
#[server(prefix = "/rpc", endpoint = "ping_webhook")]
pub async fn ping_webhook(id: String) -> Result<(), CallError> {
    let (state, requester) = calls::changing().await?;
    let id = calls::endpoint_id(&id)?;
    state
        .webhooks
        .ping(requester, id)
        .await
        .map_err(calls::refused)?;
    Ok(())
}

/// Sends a delivery again, with its original `webhook-id`.
#[server(prefix = "/rpc", endpoint = "retry_webhook_delivery")]
pub async fn retry_webhook_delivery(id: String, delivery: String) -> Result<(), CallError> {
    let (state, requester) = calls::changing().await?;
    let id = calls::endpoint_id(&id)?;
    state
        .webhooks
        .retry(requester, id, &delivery)
        .await
        .map_err(calls::refused)
}

/// Enables (its run of failures starts again) or pauses an endpoint.
#[server(prefix = "/rpc", endpoint = "set_webhook_enabled")]
pub async fn set_webhook_enabled(id: String, enabled: bool) -> Result<(), CallError> {
    use crate::server::webhooks::EndpointChange;
    let (state, requester) = calls::changing().await?;
    let id = calls::endpoint_id(&id)?;
    let change = EndpointChange {
        enabled: Some(enabled),
        ..EndpointChange::default()
    };
    state
        .webhooks
        .update(requester, id, change)
        .await
        .map_err(calls::refused)?;
    Ok(())
}

/// Removes an endpoint and its delivery log.
#[server(prefix = "/rpc", endpoint = "delete_webhook")]
pub async fn delete_webhook(id: String) -> Result<(), CallError> {
    let (state, requester) = calls::changing().await?;
    let id = calls::endpoint_id(&id)?;
    state
        .webhooks
        .delete(requester, id)
        .await
        .map_err(calls::refused)
}

#[cfg(feature = "ssr")]
mod calls {
    use super::super::server_fns::support;
    use crate::{
        api::{CallError, ErrorCode},
        server::{
            auth,
            error::ApiError,
            state::AppState,
            webhooks::{EndpointError, Requester},
        },
    };

    pub async fn reading() -> Result<(AppState, Requester), CallError> {
        let (state, caller) = support::caller().await?;
        Ok((state, Requester::from(&caller)))
    }

    /// Like `reading`, for a change: it must come from this server's own pages, so another
    /// site cannot make a signed-in browser register or remove endpoints.
    pub async fn changing() -> Result<(AppState, Requester), CallError> {
        let state = support::state()?;
        let request = support::request()?;
        auth::check_origin(&request.headers, &request.extensions, &state)
            .map_err(support::refuse)?;
        reading().await
    }

    pub fn endpoint_id(text: &str) -> Result<uuid::Uuid, CallError> {
        uuid::Uuid::parse_str(text).map_err(|_| {
            support::refuse(ApiError::bad_request(
                ErrorCode::BadRequest,
                "the endpoint id must be a UUID",
            ))
        })
    }

    pub fn refused(error: EndpointError) -> CallError {
        support::refuse(error.into())
    }
}
