//! gRPC vocabulary shared by the server and client spans and metrics.

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, …), as metrics label it.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Whether a server span with this status is an error (OpenTelemetry's RPC conventions): only
/// the codes that say the server failed, not that the request was refused.
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/baton.v1.ContextService/AppendEntries"),
            Some(("baton.v1.ContextService", "AppendEntries"))
        );
        assert_eq!(split_path("/health"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert_eq!(split_path("//x"), None);
    }

    #[test]
    fn codes() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(5), "NOT_FOUND");
        assert_eq!(code_name(99), "UNKNOWN");
        assert!(is_server_error(13) && is_server_error(14));
        assert!(!is_server_error(5) && !is_server_error(3) && !is_server_error(0));
    }
}
