//! The API's wire types and server functions, shared by the REST routes, the server and the browser.
mod server_fns;
mod types;

pub use server_fns::*;
pub use types::*;
