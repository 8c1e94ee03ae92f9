//! Baton's server library.

pub mod domain;
pub mod store;
