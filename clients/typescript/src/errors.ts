import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import type {
  ErrorInfo,
  PreconditionFailure_Violation,
  ResourceInfo,
} from "./gen/google/rpc/error_details_pb.js";

/**
 * The canonical gRPC status code names, as `BatonError.code` carries them.
 */
export type StatusCodeName =
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

// Indexed by the numeric gRPC code (connect's `Code` uses the same numbers); 0 (OK) never
// reaches an error.
const CODE_NAMES: readonly StatusCodeName[] = [
  "UNKNOWN",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** One invalid field of a request, from the error's `google.rpc.BadRequest` detail. */
export interface FieldViolation {
  /** Path to the field, e.g. `"entries[0].author"`. */
  field: string;
  /** Why the field is invalid. */
  description: string;
}

/**
 * The one error type of `@baton/client`: every failed call rejects (or every failed stream
 * throws) with a `BatonError`, whatever went wrong: a status from the server, a deadline, a lost
 * connection or a closed client.
 *
 * @example
 * ```ts
 * try {
 *   await client.getSession({ sessionKey: "nope" });
 * } catch (err) {
 *   if (err instanceof BatonError && err.code === "NOT_FOUND") { ... }
 * }
 * ```
 */
export class BatonError extends Error {
  /** The canonical status code name, e.g. `"NOT_FOUND"` or `"INVALID_ARGUMENT"`. */
  readonly code: StatusCodeName;
  /** The numeric gRPC status code (5 for NOT_FOUND, ...). */
  readonly grpcCode: number;
  /** The invalid fields of an INVALID_ARGUMENT (`google.rpc.BadRequest`); empty otherwise. */
  readonly fieldViolations: FieldViolation[];
  /**
   * How long the server asked the caller to wait before retrying (`google.rpc.RetryInfo`),
   * in milliseconds; undefined when it did not say.
   */
  readonly retryDelayMs: number | undefined;
  /** The `google.rpc.ErrorInfo` detail, if the server sent one. */
  readonly errorInfo: ErrorInfo | undefined;
  /** The `google.rpc.ResourceInfo` detail (NOT_FOUND, ALREADY_EXISTS), if any. */
  readonly resourceInfo: ResourceInfo | undefined;
  /** The violations of a `google.rpc.PreconditionFailure` (FAILED_PRECONDITION); empty otherwise. */
  readonly preconditionViolations: PreconditionFailure_Violation[];
  /** Response headers and trailers that came with the error (empty for client-side errors). */
  readonly metadata: Headers;

  /** @internal Use {@link toBatonError}; the constructor's shape may change. */
  constructor(
    code: StatusCodeName,
    message: string,
    init: {
      grpcCode?: number;
      fieldViolations?: FieldViolation[];
      retryDelayMs?: number | undefined;
      errorInfo?: ErrorInfo | undefined;
      resourceInfo?: ResourceInfo | undefined;
      preconditionViolations?: PreconditionFailure_Violation[];
      metadata?: Headers;
      cause?: unknown;
    } = {},
  ) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "BatonError";
    this.code = code;
    this.grpcCode = init.grpcCode ?? Math.max(0, CODE_NAMES.indexOf(code));
    this.fieldViolations = init.fieldViolations ?? [];
    this.retryDelayMs = init.retryDelayMs;
    this.errorInfo = init.errorInfo;
    this.resourceInfo = init.resourceInfo;
    this.preconditionViolations = init.preconditionViolations ?? [];
    this.metadata = init.metadata ?? new Headers();
  }

  /** `BatonError [NOT_FOUND]: session "x" not found` */
  override toString(): string {
    return `${this.name} [${this.code}]: ${this.message}`;
  }
}

/** The canonical name of a numeric gRPC status code. */
export function codeName(code: number): StatusCodeName {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/**
 * Turns anything a call can throw into a {@link BatonError}, decoding the `google.rpc` details
 * that the server sent in `grpc-status-details-bin` (BadRequest, RetryInfo, ErrorInfo,
 * ResourceInfo, PreconditionFailure).
 */
export function toBatonError(reason: unknown): BatonError {
  if (reason instanceof BatonError) {
    return reason;
  }
  const err = ConnectError.from(reason);
  const badRequest = err.findDetails(BadRequestSchema);
  const retryInfo = err.findDetails(RetryInfoSchema)[0];
  const delay = retryInfo?.retryDelay;
  const retryDelayMs =
    delay === undefined ? undefined : Number(delay.seconds) * 1000 + Math.floor(delay.nanos / 1e6);
  return new BatonError(codeName(err.code), err.rawMessage, {
    grpcCode: err.code,
    fieldViolations: badRequest.flatMap((b) =>
      b.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
    ),
    retryDelayMs,
    errorInfo: err.findDetails(ErrorInfoSchema)[0],
    resourceInfo: err.findDetails(ResourceInfoSchema)[0],
    preconditionViolations: err.findDetails(PreconditionFailureSchema).flatMap((p) => p.violations),
    metadata: err.metadata,
    cause: reason,
  });
}

/** @internal The error a call on a closed client fails with. */
export function closedError(): BatonError {
  return new BatonError("CANCELLED", "the BatonClient was closed", { grpcCode: Code.Canceled });
}
