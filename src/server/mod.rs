//! The service (ssr only): configuration, start-up, auth, storage, the ingest pipeline, the
//! queue worker, live status fan-out and the HTTP routes.
pub mod auth;
pub mod blobs;
pub mod client;
pub mod config;
pub mod error;
pub mod hub;
pub mod jobs;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod readiness;
pub mod receive;
pub mod retention;
pub mod routes;
pub mod running;
pub mod security_headers;
pub mod sessions;
pub mod staging;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod uploads;
pub mod worker;
