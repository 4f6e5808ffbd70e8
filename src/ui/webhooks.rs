//! `/webhooks`: the caller's webhook endpoints, each with its latest deliveries (state,
//! attempts, last answer, next attempt) and buttons to ping it, pause or enable it, remove it
//! (after a confirmation) and send a delivery again; and a form to register one. A new
//! endpoint's secret is shown once, in the page's memory only, like a new key on the Accounts
//! page.
use super::{accounts::Changes, format::format_time, CallProblem};
use crate::api::{
    create_webhook, delete_webhook, list_webhooks, ping_webhook, retry_webhook_delivery,
    set_webhook_enabled, CallError, Delivery, WebhookWithDeliveries,
};
use leptos::{ev::SubmitEvent, html, prelude::*};
use std::future::Future;

/// The URL and signing secret of the endpoint just registered, while shown.
type ShownSecret = RwSignal<Option<(String, String)>>;

/// Runs a button's call. Like every change, it first clears a secret shown after a
/// registration, so a secret never outlives the next action.
fn act(
    changes: Changes,
    secret: ShownSecret,
    call: impl Future<Output = Result<(), CallError>> + 'static,
    said: &'static str,
) {
    secret.set(None);
    changes.run(call, move |()| said.to_owned());
}

/// The subscriptions the form offers, with their labels.
const EVENT_CHOICES: [(&str, &str); 5] = [
    ("*", "Every event"),
    ("job.created", "Job created"),
    ("job.completed", "Job completed"),
    ("job.failed", "Job failed"),
    ("job.cancelled", "Job cancelled"),
];

/// Shown inside `RequireSession`: everyone manages their own account's endpoints.
#[component]
pub fn WebhooksPage() -> impl IntoView {
    let changes = Changes::new();
    let secret: ShownSecret = RwSignal::new(None);
    let listed = super::loaded::load(move || changes.done.get(), |_| list_webhooks());
    view! {
        <section class="card webhooks">
            <h1>"Webhooks"</h1>
            <p class="muted">
                "Ingest sends each endpoint a signed POST (Standard Webhooks) when your jobs are created and when they finish; failed deliveries are retried for about a day. See the "
                <a href="/docs">"API docs"</a> " for the message and how to verify it."
            </p>
            <div class="outcome" aria-live="polite">
                {move || changes.notice.get().map(|text| view! { <p class="notice">{text}</p> })}
                {move || changes.problem.get().map(|error| view! { <CallProblem error /> })}
                {move || {
                    secret
                        .get()
                        .map(|(url, secret)| {
                            view! {
                                <div class="issued-key" role="status">
                                    <p>
                                        "Signing secret for " {url}
                                        ". Copy it now: it is not shown again."
                                    </p>
                                    <code class="secret">{secret}</code>
                                </div>
                            }
                        })
                }}
            </div>
            <NewWebhookForm changes secret />
            <div class="webhook-list-head">
                <h2>"Endpoints"</h2>
                <button
                    type="button"
                    class="secondary"
                    on:click=move |_| {
                        secret.set(None);
                        changes.done.update(|count| *count += 1);
                    }
                >
                    "Refresh"
                </button>
            </div>
            <Transition fallback=|| view! { <p class="muted">"Loading endpoints…"</p> }>
                {move || {
                    listed
                        .get()
                        .map(|result| match result {
                            Ok(endpoints) if endpoints.is_empty() => {
                                view! { <p class="muted">"No endpoints yet."</p> }.into_any()
                            }
                            Ok(endpoints) => {
                                endpoints
                                    .into_iter()
                                    .map(|item| view! { <EndpointCard item changes secret /> })
                                    .collect_view()
                                    .into_any()
                            }
                            Err(error) => view! { <CallProblem error /> }.into_any(),
                        })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn NewWebhookForm(changes: Changes, secret: ShownSecret) -> impl IntoView {
    let url = NodeRef::<html::Input>::new();
    let events = NodeRef::<html::Select>::new();
    let description = NodeRef::<html::Input>::new();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (Some(url_input), Some(events_select), Some(description_input)) =
            (url.get(), events.get(), description.get())
        else {
            return;
        };
        secret.set(None);
        let call = create_webhook(
            url_input.value().trim().to_owned(),
            vec![events_select.value()],
            description_input.value().trim().to_owned(),
        );
        changes.run(call, move |made| {
            // Cleared only once registered: a refused URL stays there to be corrected.
            url_input.set_value("");
            description_input.set_value("");
            let shown = made.url.clone();
            secret.set(made.secret.map(|secret| (made.url, secret)));
            format!("Registered {shown}.")
        });
    };
    view! {
        <form class="new-webhook" on:submit=on_submit>
            <h2>"New endpoint"</h2>
            <div class="fields">
                <label for="webhook-url">"URL"</label>
                <input
                    id="webhook-url"
                    name="url"
                    type="url"
                    required
                    maxlength="2048"
                    autocomplete="off"
                    placeholder="https://example.com/ingest-hook"
                    node_ref=url
                />
                <label for="webhook-events">"Events"</label>
                <select id="webhook-events" name="events" node_ref=events>
                    {EVENT_CHOICES
                        .iter()
                        .map(|(value, label)| view! { <option value=*value>{*label}</option> })
                        .collect_view()}
                </select>
                <label for="webhook-description">"Description (optional)"</label>
                <input
                    id="webhook-description"
                    name="description"
                    maxlength="500"
                    autocomplete="off"
                    node_ref=description
                />
            </div>
            <button type="submit" disabled=move || changes.busy.get()>
                "Register endpoint"
            </button>
        </form>
    }
}

#[component]
fn EndpointCard(
    item: WebhookWithDeliveries,
    changes: Changes,
    secret: ShownSecret,
) -> impl IntoView {
    let WebhookWithDeliveries { endpoint, recent } = item;
    let heading = format!("webhook-{}", endpoint.id);
    let labelled_by = heading.clone();
    let enabled = endpoint.enabled;
    let state = if enabled { "enabled" } else { "disabled" };
    let ping = {
        let id = endpoint.id.clone();
        move |_| {
            let said = "Ping queued: Refresh to see it.";
            act(changes, secret, ping_webhook(id.clone()), said)
        }
    };
    let toggle = {
        let id = endpoint.id.clone();
        move |_| {
            let said = if enabled { "Paused." } else { "Enabled." };
            act(
                changes,
                secret,
                set_webhook_enabled(id.clone(), !enabled),
                said,
            )
        }
    };
    // Removing drops the delivery log too, so it takes a second, explicit click.
    let confirming = RwSignal::new(false);
    let remove = {
        let id = endpoint.id.clone();
        move |_| {
            act(
                changes,
                secret,
                delete_webhook(id.clone()),
                "Endpoint removed.",
            )
        }
    };
    let id = endpoint.id.clone();
    let details = format!(
        "{} · created {}",
        endpoint.events.join(", "),
        format_time(&endpoint.created_at)
    );
    view! {
        <section class="webhook" aria-labelledby=labelled_by data-state=state>
            <div class="webhook-head">
                <h3 id=heading>{endpoint.url}</h3>
                <span class="badge" data-state=state>
                    {state}
                </span>
            </div>
            <p class="muted">
                {details}
                {(!endpoint.description.is_empty()).then(|| format!(" · {}", endpoint.description))}
            </p>
            {endpoint.disabled_reason.map(|reason| view! { <p class="error">{reason}</p> })}
            <div class="webhook-actions">
                <button type="button" on:click=ping disabled=move || !enabled || changes.busy.get()>
                    "Send a ping"
                </button>
                <button type="button" class="secondary" on:click=toggle disabled=move || changes.busy.get()>
                    {if enabled { "Pause" } else { "Enable" }}
                </button>
                <button
                    type="button"
                    class="secondary danger"
                    on:click=move |_| confirming.set(true)
                    disabled=move || confirming.get()
                >
                    "Remove"
                </button>
            </div>
            <Show when=move || confirming.get()>
                <div class="confirm" role="group" aria-label="Remove this endpoint?">
                    <p>"Remove this endpoint? It is sent nothing more, and its delivery log goes with it."</p>
                    <button
                        type="button"
                        class="danger"
                        on:click=remove.clone()
                        disabled=move || changes.busy.get()
                    >
                        "Yes, remove it"
                    </button>
                    <button type="button" class="secondary" on:click=move |_| confirming.set(false)>
                        "Keep it"
                    </button>
                </div>
            </Show>
            <DeliveryTable endpoint=id deliveries=recent changes secret />
        </section>
    }
}

#[component]
fn DeliveryTable(
    endpoint: String,
    deliveries: Vec<Delivery>,
    changes: Changes,
    secret: ShownSecret,
) -> impl IntoView {
    if deliveries.is_empty() {
        return view! { <p class="muted">"Nothing delivered yet."</p> }.into_any();
    }
    let rows = deliveries
        .into_iter()
        .map(|delivery| {
            let answer = match (delivery.last_response_code, &delivery.last_error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(error)) => error.clone(),
                (None, None) => "—".to_owned(),
            };
            let when = match &delivery.next_attempt_at {
                Some(next) => format!("next try {}", format_time(next)),
                None => format_time(&delivery.updated_at),
            };
            let job = delivery.job_id.clone().map(|job| {
                let href = format!("/jobs/{job}");
                view! { <a href=href>{job.chars().take(8).collect::<String>()}</a> }
            });
            // A pending one goes out by itself; sending it now as well could send it twice.
            let again = (delivery.status != "pending").then(|| {
                let (endpoint, id) = (endpoint.clone(), delivery.id.clone());
                view! {
                    <button
                        type="button"
                        class="secondary"
                        on:click=move |_| {
                            let call = retry_webhook_delivery(endpoint.clone(), id.clone());
                            act(changes, secret, call, "Queued to be sent again.")
                        }
                    >
                        "Send again"
                    </button>
                }
            });
            let row_status = delivery.status.clone();
            view! {
                <tr data-status=row_status>
                    <td>{delivery.event_type}</td>
                    <td>{job}</td>
                    <td>
                        <span class="badge">{delivery.status}</span>
                    </td>
                    <td>{delivery.attempts}</td>
                    <td>{answer}</td>
                    <td>{when}</td>
                    <td>{again}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="deliveries">
            <caption class="visually-hidden">"Latest deliveries"</caption>
            <thead>
                <tr>
                    <th scope="col">"Event"</th>
                    <th scope="col">"Job"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Attempts"</th>
                    <th scope="col">"Last answer"</th>
                    <th scope="col">"When"</th>
                    <th scope="col">
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
