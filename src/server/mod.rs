//! The service (ssr only). Layers point down: `startup` builds the `state` and the `router`;
//! the router wires `routes` (handlers), which use `state`, `auth`, `limits` and `error`; the
//! state holds the services (`jobs`, `sessions`, `keys`, `accounts`, `readiness`, `throttle`),
//! which sit on the leaves (`store`, `blobs`, `hub`, `receive`, `metrics`, `token`, `config`, `client`).
pub mod accounts;
pub mod auth;
pub mod blobs;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod hub;
pub mod jobs;
pub mod keys;
pub mod leases;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod quotas;
pub mod readiness;
pub mod receive;
pub mod retention;
pub mod router;
pub mod routes;
pub mod running;
pub mod security_headers;
pub mod sessions;
pub mod staging;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod uploads;
pub mod worker;
