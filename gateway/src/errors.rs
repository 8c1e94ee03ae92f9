//! gRPC statuses and argument errors as MCP tool errors: the canonical code name, the message,
//! and the google.rpc details the server attached (field violations, resource info,
//! precondition failures, retry delay), as text for the model and as structured content.

use serde_json::{Value as Json, json};
use tonic::Status;
use tonic_types::StatusExt;

use crate::args::ArgumentError;

pub use baton_proto::code_name;

/// A failed call, ready to be shown to an MCP client.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolFailure {
    pub text: String,
    pub structured: Json,
}

/// Describes a gRPC error status.
pub fn from_status(status: &Status) -> ToolFailure {
    let code = code_name(status.code());
    let mut lines = vec![format!("{code}: {}", status.message())];
    let mut structured = json!({"code": code, "message": status.message()});
    let details = status.get_error_details();
    if let Some(bad_request) = details.bad_request() {
        let violations: Vec<Json> = bad_request
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
        lines.push("field violations:".into());
        for v in &bad_request.field_violations {
            lines.push(format!("- {}: {}", v.field, v.description));
        }
        structured["field_violations"] = Json::Array(violations);
    }
    if let Some(info) = details.resource_info() {
        lines.push(format!("resource: {} {:?}", info.resource_type, info.resource_name));
        structured["resource"] = json!({"type": info.resource_type, "name": info.resource_name});
    }
    if let Some(failure) = details.precondition_failure() {
        lines.push("precondition failures:".into());
        let violations: Vec<Json> = failure
            .violations
            .iter()
            .map(|v| {
                lines.push(format!("- {} {}: {}", v.r#type, v.subject, v.description));
                json!({"type": v.r#type, "subject": v.subject, "description": v.description})
            })
            .collect();
        structured["precondition_failures"] = Json::Array(violations);
    }
    if let Some(retry) = details.retry_info().and_then(|r| r.retry_delay) {
        lines.push(format!("retry after {} ms", retry.as_millis()));
        structured["retry_after_ms"] = json!(retry.as_millis() as u64);
    }
    ToolFailure { text: lines.join("\n"), structured }
}

/// Describes arguments rejected before any gRPC call.
pub fn from_arguments(error: &ArgumentError) -> ToolFailure {
    let violations: Vec<Json> =
        error.violations.iter().map(|v| json!({"field": v.field, "description": v.description})).collect();
    ToolFailure {
        text: format!("INVALID_ARGUMENT: {error}"),
        structured: json!({"code": "INVALID_ARGUMENT", "message": "invalid arguments", "field_violations": violations}),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn field_violations_are_listed() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("entries[0].author", "must not be empty");
        let status = Status::with_error_details(Code::InvalidArgument, "bad append", details);
        let failure = from_status(&status);
        assert!(failure.text.starts_with("INVALID_ARGUMENT: bad append"));
        assert!(failure.text.contains("- entries[0].author: must not be empty"));
        assert_eq!(failure.structured["field_violations"][0]["field"], "entries[0].author");
    }

    #[test]
    fn plain_status() {
        let failure = from_status(&Status::not_found("session \"x\" not found"));
        assert_eq!(failure.text, "NOT_FOUND: session \"x\" not found");
        assert_eq!(failure.structured["code"], "NOT_FOUND");
    }
}
