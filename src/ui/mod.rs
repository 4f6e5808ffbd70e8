//! Pages and components.
mod home;
mod sign_in;

pub use home::HomePage;
