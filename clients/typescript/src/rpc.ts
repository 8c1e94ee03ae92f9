/**
 * The `google.rpc` error messages (Status, BadRequest, RetryInfo, ErrorInfo, ...) that Baton's
 * errors carry in `grpc-status-details-bin`, generated from Baton's wire-compatible definitions
 * in `clients/third_party`. {@link BatonError} already decodes the ones it knows.
 *
 * @packageDocumentation
 */
export * from "./gen/google/rpc/status_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
