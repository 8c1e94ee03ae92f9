/**
 * `@baton/client`: the TypeScript client of Baton, the context and handoff service for AI
 * agents.
 *
 * - {@link BatonClient}: a method per RPC, streams as `AsyncIterable`, safe retries, resumable
 *   streams, deadlines, tenant and API key headers.
 * - {@link BatonError}: the one error type, with the status code name and field violations.
 * - The messages and enums of `baton.v1` are exported from `@baton/client/v1`.
 *
 * @packageDocumentation
 */
export { BatonClient, LSN_HEADER, MIN_LSN_HEADER, textOf } from "./client.js";
export type {
  AppendEntriesInit,
  BatonClientOptions,
  BatonTlsOptions,
  CallOptions,
  NewEntryInit,
  RequestShape,
} from "./client.js";
export { BatonError, codeName, toBatonError } from "./errors.js";
export type { FieldViolation, StatusCodeName } from "./errors.js";
export { DEFAULT_RETRY } from "./retry.js";
export type { RetryOptions } from "./retry.js";
