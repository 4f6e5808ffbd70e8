//! Pages and components.
mod home;
mod jobs;
mod sign_in;

pub use home::HomePage;
