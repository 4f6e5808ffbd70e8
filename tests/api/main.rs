//! One integration-test binary: a real server on a loopback port, a real SQLite file, real
//! HTTP and WebSocket clients.
mod auth;
mod bad_input;
mod cancel;
mod cancel_races;
mod cli;
mod content;
mod full_disk;
mod health;
mod helpers;
mod limits;
mod metrics;
mod openapi;
mod pending_uploads;
mod queue;
mod refused_patches;
mod restart;
mod retention;
mod seed_examples;
mod server_fns;
mod session;
mod tus_uploads;
mod uploads;
mod websocket;
