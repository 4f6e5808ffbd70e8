//! One integration-test binary: a real server on a loopback port, a real SQLite file, real
//! HTTP and WebSocket clients.
mod auth;
mod bad_input;
mod cancel;
mod cli;
mod content;
mod fuzz;
mod health;
mod helpers;
mod limits;
mod metrics;
mod multipart_framing;
mod openapi;
mod queue;
mod restart;
mod retention;
mod seed_examples;
mod server_fns;
mod session;
mod tus_uploads;
mod uploads;
mod websocket;
