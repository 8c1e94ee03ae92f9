//! The rules of Baton, free of gRPC, SQL and Redis: the records (`model`), the commands callers
//! send (`commands`), validation and limits (`validate`), the state machines (`rules`), token
//! estimates and budgets (`tokens`), handoff summaries (`summary`), page tokens (`page`), the
//! search query language (`search`), the
//! cache contract (`cache`), business counters (`counters`), principals, roles and API key
//! records (`principal`), and the service that ties store,
//! cache, hub and clock together (`service`). Nothing here imports `api`, `cache` (Redis),
//! `wire` or sqlx: those depend on the domain, not the other way round.

#[macro_use]
mod model;
pub mod cache;
pub mod commands;
pub mod counters;
mod error;
pub mod page;
pub mod principal;
pub mod rules;
pub mod search;
pub mod service;
pub mod summary;
pub mod tokens;
pub mod validate;

pub use error::{Error, FieldViolation, Result};
pub use model::*;
