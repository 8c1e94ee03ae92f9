//! The one mapping from domain errors to gRPC statuses, with google.rpc error details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { what, key } => {
                let details = ErrorDetails::with_resource_info(what, key, "", "no such resource in this tenant");
                Status::with_error_details(Code::NotFound, message, details)
            }
            Error::AlreadyExists { what, key } => {
                let details = ErrorDetails::with_resource_info(what, key, "", "the key is taken in this tenant");
                Status::with_error_details(Code::AlreadyExists, message, details)
            }
            Error::FailedPrecondition { reason, subject, message } => {
                let details = ErrorDetails::with_precondition_failure_violation(reason, subject, message.clone());
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::OutOfRange(_) => {
                let details = ErrorDetails::with_bad_request_violation("after_seq", message.clone());
                Status::with_error_details(Code::OutOfRange, message, details)
            }
            Error::ResourceExhausted { retry_after, .. } => {
                let details = ErrorDetails::with_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Unavailable(_) => {
                let details = ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(500)));
                Status::with_error_details(Code::Unavailable, message, details)
            }
            Error::Internal(_) => Status::internal(message),
        }
    }
}
