//! The server functions the page uses, called over HTTP as the browser does: signed in by the
//! session cookie, on the same service as the REST routes.
use crate::helpers::*;
use ingest::{
    api::JobPage,
    domain::{JobState, JobStatus},
};

async fn call(
    app: &TestApp,
    name: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> reqwest::Response {
    let request = app.client.post(app.url(&format!("/rpc/{name}"))).form(form);
    let request = match cookie {
        Some(cookie) => request.header("cookie", cookie),
        None => request,
    };
    request.send().await.unwrap()
}

async fn signed_in(app: &TestApp) -> String {
    let response = call(app, "sign_in", &[("token", TOKEN)], None).await;
    assert_eq!(response.status(), 200);
    let header = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    header.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_wrong_token_is_refused_with_a_message() {
    let app = spawn_app().await;
    let response = call(
        &app,
        "sign_in",
        &[("token", "wrong-token-0123456789")],
        None,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    // The page's error type: the status (to tell transient from permanent) and the message.
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(body["message"].as_str().unwrap().contains("invalid token"));
}

#[tokio::test]
async fn a_signed_in_page_can_start_list_follow_and_cancel_jobs() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    assert_eq!(
        call(&app, "start_ingest", &[("metadata", "{}")], None)
            .await
            .status(),
        401
    );
    let cookie = signed_in(&app).await;

    let started: JobStatus = call(
        &app,
        "start_ingest",
        &[("metadata", r#"{"from":"page"}"#)],
        Some(&cookie),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(started.status, JobState::Queued);
    assert_eq!(started.metadata["from"], "page");
    let bad = call(&app, "start_ingest", &[("metadata", "[1]")], Some(&cookie)).await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("JSON object"));

    let id = started.job_id.to_string();
    let status: JobStatus = call(&app, "job_status", &[("id", &id)], Some(&cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status.job_id, started.job_id);
    let page: JobPage = call(
        &app,
        "list_jobs",
        &[("status", "queued"), ("limit", "10")],
        Some(&cookie),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        page.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![started.job_id]
    );

    let cancelled: JobStatus = call(&app, "cancel_job", &[("id", &id)], Some(&cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobState::Cancelled);
    assert_eq!(
        call(&app, "cancel_job", &[("id", &id)], Some(&cookie))
            .await
            .status(),
        409
    );

    assert_eq!(
        call(&app, "sign_out", &[], Some(&cookie)).await.status(),
        200
    );
    assert_eq!(
        call(&app, "list_jobs", &[], Some(&cookie)).await.status(),
        401
    );
}
