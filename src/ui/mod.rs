//! Pages and components.
mod home;

pub use home::HomePage;
