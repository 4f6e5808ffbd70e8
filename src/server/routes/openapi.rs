//! The OpenAPI 3.1 document's frame (title, tags, security schemes, the answers every route
//! shares, the wire formats no handler type describes) and the Swagger UI that shows it at
//! `/docs` (assets vendored in the binary). The paths come from the route list in `routes`.
use crate::{api::ErrorBody, server::state::AppState};
use axum::Router;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};
use utoipa_swagger_ui::SwaggerUi;

pub const DOCUMENT_PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ingest",
        description = "Push files or metadata in as ingest jobs and follow each one until it is stored. Every error is `{\"error\": {\"code\", \"message\"}}`."
    ),
    components(schemas(IngestJson, IngestForm, IngestUrlEncoded, TusResumable)),
    modifiers(&Security),
    tags(
        (name = "jobs", description = "Start, follow, download and delete ingest jobs"),
        (name = "uploads", description = "Uploads in the tus 1.0 shape: declare, then send the bytes"),
        (name = "operations", description = "Health and metrics"),
        (name = "session", description = "Browser sign-in with a session cookie"),
        (name = "accounts", description = "Who you are, and (for admins) accounts and their API keys"),
        (name = "webhooks", description = "Signed messages (Standard Webhooks) to your endpoints when your jobs are created and finish, with a delivery log and replay"),
    )
)]
pub struct ApiDoc;

/// Answers any route that needs the token can give besides its own. Routes name it in their
/// annotation, and `ServerWide` adds whatever of it an operation with a security requirement
/// leaves out, so no such route can forget one.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes answers only.
pub enum CommonErrors {
    #[response(
        status = 401,
        description = "Missing or wrong token, or no live session"
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "Signed in by session cookie, but sent from another site's page (a foreign `Origin` or `Sec-Fetch-Site`)"
    )]
    Forbidden(ErrorBody),
    #[response(
        status = 408,
        description = "The request took longer than `request_timeout_secs` (uploads and WebSockets have idle timeouts instead)"
    )]
    Timeout(ErrorBody),
    #[response(
        status = 429,
        description = "Rate limit reached (the address's, or the account's `requests_per_second` quota; uploads: also its `uploads` quota); see Retry-After"
    )]
    TooManyRequests(ErrorBody),
    #[response(
        status = 500,
        description = "Internal error (the details are only in the log)"
    )]
    Internal(ErrorBody),
}

/// Answers the server gives to any request, whatever its route, before the route sees it.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes answers only.
pub enum AnyRequestErrors {
    #[response(
        status = 400,
        description = "Malformed request: a path parameter, query or header the route cannot read"
    )]
    BadRequest(ErrorBody),
    #[response(
        status = 414,
        description = "The request target (path and query) is longer than 8 KiB"
    )]
    UriTooLong(ErrorBody),
    #[response(
        status = 431,
        description = "The request headers are larger than 32 KiB"
    )]
    HeadersTooLarge(ErrorBody),
}

/// The document with every path in it, completed with the answers the server's layers give.
pub fn complete(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    ServerWide.modify(&mut document);
    document
}

/// Completes every operation with the answers the server's layers give on any route: those
/// of `AnyRequestErrors` everywhere, those of `CommonErrors` wherever the token is needed. An
/// answer the route describes itself keeps the route's description. Applied once the routes
/// have added their paths (see `complete`).
struct ServerWide;

impl Modify for ServerWide {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::IntoResponses;
        let everywhere = AnyRequestErrors::responses();
        let with_token = CommonErrors::responses();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
                &mut item.query,
            ];
            for operation in operations.into_iter().flatten() {
                let needs_token = operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| !requirements.is_empty());
                let answers = &mut operation.responses.responses;
                let added = everywhere
                    .iter()
                    .chain(with_token.iter().filter(|_| needs_token));
                for (status, response) in added {
                    answers
                        .entry(status.clone())
                        .or_insert_with(|| response.clone());
                }
            }
        }
    }
}

/// The two ways to present the token.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
    }
}

/// `POST /api/ingest` as JSON.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the wire format only.
pub struct IngestJson {
    /// JSON text holding an object (`"{\"test\":\"data\"}"`), or the object itself.
    #[schema(value_type = Object)]
    metadata: Option<String>,
}

/// `POST /api/ingest` as a multipart form; both parts optional.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the wire format only.
pub struct IngestForm {
    /// The file, streamed to storage as it arrives.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// JSON text holding an object.
    metadata: Option<String>,
}

/// `POST /api/ingest` as a urlencoded form (PowerShell's `-Body @{ metadata = "{}" }`).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the wire format only.
pub struct IngestUrlEncoded {
    /// JSON text holding an object.
    metadata: Option<String>,
}

/// `Tus-Resumable`: the tus version, the only one this server speaks.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the wire format only.
pub enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1_0_0,
}

/// `document` at `/api/openapi.json` and Swagger UI at `/docs`.
pub fn docs_router(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    SwaggerUi::new("/docs").url(DOCUMENT_PATH, document).into()
}
