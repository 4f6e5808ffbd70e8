//! The API's wire types and server functions, shared by the REST routes, the server and the browser.
mod account_fns;
mod error_code;
mod server_fns;
mod types;
mod webhook_fns;
mod webhook_types;

pub use account_fns::*;
pub use error_code::ErrorCode;
pub use server_fns::*;
pub use types::*;
pub use webhook_fns::*;
pub use webhook_types::*;
