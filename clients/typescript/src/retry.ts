import { Code, ConnectError } from "@connectrpc/connect";
import { BatonError } from "./errors.js";

/**
 * How failed calls are retried. A call is attempted at most `maxAttempts` times; before retry
 * `n` (1, 2, ...) it waits a random time between half and all of
 * `min(maxBackoffMs, initialBackoffMs * multiplier^(n-1))` ("equal jitter"), and never less
 * than the `google.rpc.RetryInfo` delay the server asked for.
 */
export interface RetryOptions {
  /** Attempts in all, the first one included (1: never retry). Default 8. */
  maxAttempts: number;
  /** The backoff before the first retry, in milliseconds. Default 100. */
  initialBackoffMs: number;
  /** The longest backoff, in milliseconds. Default 5000. */
  maxBackoffMs: number;
  /** Growth of the backoff per retry. Default 2. */
  multiplier: number;
}

/** The retry policy used when the client options do not say otherwise. */
export const DEFAULT_RETRY: Readonly<RetryOptions> = Object.freeze({
  maxAttempts: 8,
  initialBackoffMs: 100,
  maxBackoffMs: 5000,
  multiplier: 2,
});

/**
 * What a failure means for a retry:
 * - `rejected`: the server refused the call before doing anything (UNAVAILABLE,
 *   RESOURCE_EXHAUSTED), or the request never left (connection refused): safe to retry any call;
 * - `lost`: the connection broke after the request may have been sent and before an answer:
 *   safe to retry only calls that cannot write twice (reads, appends with an idempotency key);
 * - `tls`: the TLS handshake failed (an untrusted or expired certificate, a wrong name):
 *   retrying cannot help;
 * - `final`: anything else (a status from the server, a deadline, a cancellation).
 */
export type FailureKind = "rejected" | "lost" | "tls" | "final";

// Node error codes of a connection that could not be opened: the request was never sent.
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

function errorChain(reason: unknown): unknown[] {
  const chain: unknown[] = [];
  let cur: unknown = reason;
  while (cur instanceof Error && !chain.includes(cur) && chain.length < 16) {
    chain.push(cur);
    cur = (cur as { cause?: unknown }).cause;
  }
  return chain;
}

function nodeErrorCodes(reason: unknown): string[] {
  return errorChain(reason)
    .map((e) => (e as { code?: unknown }).code)
    .filter((c): c is string => typeof c === "string");
}

/**
 * Classifies a failure of one attempt (see {@link FailureKind}). `cancelledHere` tells whether
 * the caller's signal (or close()) aborted the call: otherwise a CANCELLED without a status is
 * an HTTP/2 stream reset (RST_STREAM CANCEL) by a connection going away.
 */
export function classify(reason: unknown, cancelledHere: boolean): FailureKind {
  if (reason instanceof BatonError) {
    return "final";
  }
  const err = ConnectError.from(reason);
  // A status the server sent has a grpc-status header or trailer; errors made on this side
  // (broken connections, deadlines, cancellation) do not.
  const fromServer = err.metadata.has("grpc-status");
  if (fromServer) {
    return err.code === Code.Unavailable || err.code === Code.ResourceExhausted ? "rejected" : "final";
  }
  if (err.code === Code.DeadlineExceeded || (err.code === Code.Canceled && cancelledHere)) {
    return "final";
  }
  const codes = nodeErrorCodes(reason);
  if (codes.some((c) => NOT_SENT.has(c))) {
    return "rejected";
  }
  if (codes.some((c) => c.includes("CERT") || c.startsWith("ERR_TLS") || c.startsWith("ERR_SSL"))) {
    return "tls";
  }
  // Everything else that failed on this side without a status is the transport giving way:
  // a reset or closed connection, a GOAWAY, a stream that ended without trailers.
  if (
    codes.length > 0 ||
    err.code === Code.Unavailable ||
    err.code === Code.Canceled ||
    err.code === Code.Aborted ||
    err.code === Code.Internal ||
    err.code === Code.Unknown
  ) {
    return "lost";
  }
  return "final";
}

/** The wait before retry number `retry` (1-based), honouring the server's RetryInfo delay. */
export function backoffMs(policy: RetryOptions, retry: number, serverDelayMs?: number): number {
  const base = Math.min(
    policy.maxBackoffMs,
    policy.initialBackoffMs * Math.pow(policy.multiplier, Math.max(0, retry - 1)),
  );
  const jittered = base / 2 + Math.random() * (base / 2);
  return Math.max(jittered, serverDelayMs ?? 0);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Fills the unset fields of a partial policy from a base policy and checks the numbers. */
export function resolveRetry(base: RetryOptions, over: Partial<RetryOptions> | false | undefined): RetryOptions {
  if (over === false) {
    return { ...base, maxAttempts: 1 };
  }
  const p = { ...base, ...(over ?? {}) };
  if (!(Number.isInteger(p.maxAttempts) && p.maxAttempts >= 1)) {
    throw new RangeError(`retry.maxAttempts must be an integer >= 1, got ${p.maxAttempts}`);
  }
  if (!(p.initialBackoffMs >= 0 && p.maxBackoffMs >= 0 && p.multiplier >= 1)) {
    throw new RangeError("retry backoffs must be >= 0 and the multiplier >= 1");
  }
  return p;
}
