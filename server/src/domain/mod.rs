//! The rules of Baton, free of gRPC and SQL: the records (`model`), validation and limits
//! (`validate`), the state machines (`rules`), token estimates (`tokens`), handoff summaries
//! (`summary`), and the service that ties store, hub and clock together (`service`).

mod error;
mod model;
pub mod rules;
pub mod summary;
pub mod tokens;

pub use error::{Error, FieldViolation, Result};
pub use model::*;
