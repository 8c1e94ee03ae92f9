//! The rules of Baton, free of gRPC and SQL: the records (`model`), validation and limits
//! (`validate`), the state machines (`rules`), token estimates (`tokens`), handoff summaries
//! (`summary`), and the service that ties store, hub and clock together (`service`).

pub mod cache;
pub mod commands;
pub mod counters;
mod error;
mod model;
pub mod page;
pub mod rules;
pub mod service;
pub mod summary;
pub mod tokens;
pub mod validate;

pub use error::{Error, FieldViolation, Result};
pub use model::*;
