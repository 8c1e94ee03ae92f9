import { randomUUID } from "node:crypto";
import { clone, create, isMessage } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { CallOptions as ConnectCallOptions, Client, Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { NewEntrySchema } from "./gen/baton/v1/common_pb.js";
import type { Entry, Handoff, HandoffEvent, NewEntry, Session } from "./gen/baton/v1/common_pb.js";
import {
  AppendEntriesRequestSchema,
  CloseSessionRequestSchema,
  CompactSessionRequestSchema,
  ContextService,
  CreateSessionRequestSchema,
  DeleteSessionRequestSchema,
  ForkSessionRequestSchema,
  GetContextWindowRequestSchema,
  GetSessionRequestSchema,
  ListEntriesRequestSchema,
  ListSessionsRequestSchema,
  RedactEntriesRequestSchema,
  SearchEntriesRequestSchema,
  StreamEntriesRequestSchema,
  UpdateSessionRequestSchema,
} from "./gen/baton/v1/context_pb.js";
import type {
  AppendEntriesRequest,
  AppendEntriesResponse,
  DeleteSessionResponse,
  GetContextWindowResponse,
  ListEntriesResponse,
  ListSessionsResponse,
  RedactEntriesResponse,
  SearchEntriesResponse,
} from "./gen/baton/v1/context_pb.js";
import {
  AcceptHandoffRequestSchema,
  CancelHandoffRequestSchema,
  CompleteHandoffRequestSchema,
  GetHandoffRequestSchema,
  HandoffService,
  ListHandoffsRequestSchema,
  RejectHandoffRequestSchema,
  RequestHandoffRequestSchema,
  StreamHandoffContextRequestSchema,
  WatchHandoffsRequestSchema,
} from "./gen/baton/v1/handoff_pb.js";
import type { ListHandoffsResponse } from "./gen/baton/v1/handoff_pb.js";
import { BatonError, closedError, toBatonError } from "./errors.js";
import { DEFAULT_RETRY, backoffMs, classify, resolveRetry, sleep } from "./retry.js";
import type { RetryOptions } from "./retry.js";

/** TLS settings for {@link BatonClientOptions.tls}; passed to Node's `http2.connect`. */
export interface BatonTlsOptions {
  /** CA certificate(s) to trust instead of the system's, PEM. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate for mutual TLS, PEM. */
  cert?: string | Buffer;
  /** The client certificate's private key, PEM. */
  key?: string | Buffer;
  /** The server name to verify the certificate against (default: the target's host). */
  servername?: string;
  /** Verify the server certificate (default true). */
  rejectUnauthorized?: boolean;
}

/** The response header with the server's log position after a write (or a read a read replica served). */
export const LSN_HEADER = "baton-lsn";
/**
 * The request header with the highest log position the client has been told: a server with read
 * replicas serves the call's reads from one that has replayed that far (read-your-writes).
 */
export const MIN_LSN_HEADER = "baton-min-lsn";

/** A log position in its 16-digit upper-case form, or undefined when `text` is not one. */
function normalizePosition(text: string | null | undefined): string | undefined {
  if (text === null || text === undefined || !/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  return text.toUpperCase().padStart(16, "0");
}

/** Options of {@link BatonClient}. */
export interface BatonClientOptions {
  /** The tenant, sent as the `x-baton-tenant` header (the server's default tenant when unset). */
  tenant?: string;
  /** An API key, sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /**
   * Use TLS: `true` for the system's trust store, or the certificates to use. A target starting
   * with `https://` uses TLS too.
   */
  tls?: boolean | BatonTlsOptions;
  /**
   * Default deadline of unary calls in milliseconds, retries included (default 10 000;
   * 0: none). Streams have no default deadline; give one per call with
   * {@link CallOptions.timeoutMs}.
   */
  timeoutMs?: number;
  /** Retry policy (defaults: {@link DEFAULT_RETRY}). */
  retry?: Partial<RetryOptions>;
  /** Extra headers sent with every call. */
  headers?: Record<string, string>;
  /**
   * A log position to start from, as another client's {@link BatonClient.logPosition} gave it
   * (e.g. handed over by the agent that wrote): this client's reads then reflect that client's
   * writes, as they do its own. 1 to 16 hexadecimal digits.
   */
  logPosition?: string;
  /**
   * Interval of HTTP/2 PINGs that detect a dead connection while a call is open, in
   * milliseconds (default 30 000).
   */
  keepaliveMs?: number;
}

/** Per-call options, the last argument of every method. */
export interface CallOptions {
  /** Deadline of this call in milliseconds, retries and stream reconnections included. */
  timeoutMs?: number;
  /** Cancels the call (or ends the stream) when aborted; it then fails with CANCELLED. */
  signal?: AbortSignal;
  /** Extra headers for this call. */
  headers?: Record<string, string>;
  /** Retry policy for this call; `false` turns retries off. */
  retry?: Partial<RetryOptions> | false;
}

/** A request argument: the generated message, or a plain object with some of its fields. */
export type RequestShape<Desc extends DescMessage> = MessageInitShape<Desc>;

/**
 * An entry to append: a `NewEntry` message or init object, where the `content` oneof may also be
 * given as a plain `text` (or `data`) field: `{ kind: EntryKind.MESSAGE, author: "a", text: "hi" }`.
 */
export type NewEntryInit =
  | MessageInitShape<typeof NewEntrySchema>
  | (Omit<MessageInitShape<typeof NewEntrySchema>, "content"> & { text: string; data?: undefined })
  | (Omit<MessageInitShape<typeof NewEntrySchema>, "content"> & { data: Uint8Array; text?: undefined });

/** The request of {@link BatonClient.appendEntries}: entries may use the `text` / `data` shorthand. */
export type AppendEntriesInit =
  | MessageInitShape<typeof AppendEntriesRequestSchema>
  | (Omit<MessageInitShape<typeof AppendEntriesRequestSchema>, "entries"> & { entries?: NewEntryInit[] });

/** The text content of an entry, or undefined when it has binary content or none. */
export function textOf(entry: Entry | NewEntry): string | undefined {
  return entry.content.case === "text" ? entry.content.value : undefined;
}

function toNewEntry(e: NewEntryInit): NewEntry {
  if (isMessage(e, NewEntrySchema)) return clone(NewEntrySchema, e);
  const { text, data, ...rest } = e as { text?: string; data?: Uint8Array } & Record<string, unknown>;
  if (text !== undefined && data !== undefined) {
    throw new TypeError("a NewEntry has text or data, not both");
  }
  const init = rest as MessageInitShape<typeof NewEntrySchema>;
  if (text !== undefined) return create(NewEntrySchema, { ...init, content: { case: "text", value: text } });
  if (data !== undefined) return create(NewEntrySchema, { ...init, content: { case: "data", value: data } });
  return create(NewEntrySchema, init);
}

/** Gives a request a fresh idempotency key (a UUID) unless it has one. */
function withKey<T extends { idempotencyKey: string }>(req: T): T {
  if (req.idempotencyKey === "") req.idempotencyKey = randomUUID();
  return req;
}

/**
 * A request message with an idempotency key, built from the caller's message or init object
 * without modifying it: every retry of the call sends that key, so the server acts once.
 */
function keyed<Desc extends DescMessage>(schema: Desc, request: MessageInitShape<Desc>): MessageShape<Desc> {
  const req = isMessage(request, schema) ? clone(schema, request) : create(schema, request);
  return withKey(req as MessageShape<Desc> & { idempotencyKey: string });
}

/**
 * Parses `host:port`, `http://host:port` or `https://host:port` into the base URL of the
 * transport. @internal
 */
export function baseUrlOf(target: string, tls: boolean): { baseUrl: string; secure: boolean } {
  const m = /^(https?):\/\/(.+?)\/*$/i.exec(target.trim());
  if (m) {
    const secure = tls || m[1]!.toLowerCase() === "https";
    return { baseUrl: `${secure ? "https" : "http"}://${m[2]}`, secure };
  }
  const hostPort = target.trim();
  if (hostPort === "" || hostPort.includes("/")) {
    throw new TypeError(`BatonClient: target must be host:port, http://host:port or https://host:port, got "${target}"`);
  }
  return { baseUrl: `${tls ? "https" : "http"}://${hostPort}`, secure: tls };
}

// Joins the caller's signal and the client's close signal into one, without AbortSignal.any
// (Node 20.3+): the client supports Node 18.
function linkSignals(...signals: Array<AbortSignal | undefined>): { signal: AbortSignal; dispose(): void } {
  const ctrl = new AbortController();
  const undo: Array<() => void> = [];
  for (const s of signals) {
    if (s === undefined) continue;
    if (s.aborted) {
      ctrl.abort(s.reason);
      break;
    }
    const onAbort = () => ctrl.abort(s.reason);
    s.addEventListener("abort", onAbort, { once: true });
    undo.push(() => s.removeEventListener("abort", onAbort));
  }
  return { signal: ctrl.signal, dispose: () => undo.forEach((f) => f()) };
}

// W3C trace context: when the application has @opentelemetry/api (and registered a propagator
// and a context manager, as an OpenTelemetry SDK does), the active trace context goes out with
// every call as `traceparent` / `tracestate`. Loaded lazily and optional: nothing happens
// without it. The name is in a variable so TypeScript does not require the package.
const OTEL_API = "@opentelemetry/api";
interface OtelApi {
  context: { active(): unknown };
  propagation: { inject(ctx: unknown, carrier: Headers, setter: { set(c: Headers, k: string, v: string): void }): void };
}
let otelApi: Promise<OtelApi | undefined> | undefined;
function loadOtel(): Promise<OtelApi | undefined> {
  otelApi ??= import(OTEL_API).then(
    (m: Partial<OtelApi> & { default?: Partial<OtelApi> }) => {
      const api = m.propagation && m.context ? m : m.default;
      return api?.propagation && api.context ? (api as OtelApi) : undefined;
    },
    () => undefined,
  );
  return otelApi;
}
const propagateTrace: Interceptor = (next) => async (req) => {
  const api = await loadOtel();
  if (api) {
    api.propagation.inject(api.context.active(), req.header, { set: (h, k, v) => h.set(k, v) });
  }
  return next(req);
};

async function* nothing<T>(): AsyncGenerator<T, void, undefined> {}

function transportError(what: string, reason: unknown): BatonError {
  const detail = reason instanceof Error ? reason.message : String(reason);
  return new BatonError("UNAVAILABLE", `${what}: ${detail}`, { cause: reason });
}

function cancelled(): BatonError {
  return new BatonError("CANCELLED", "the call was cancelled");
}

// What a stream method needs to reopen itself after the last item it delivered.
interface StreamPlan<T> {
  method: string;
  open(co: ConnectCallOptions): AsyncIterable<T>;
  // Records a delivered item; false means "already delivered before the reconnect: skip it".
  accept(item: T): boolean;
}

/**
 * A client of one Baton server: a method per RPC of `baton.v1.ContextService` and
 * `baton.v1.HandoffService`, over gRPC (HTTP/2) on one multiplexed connection.
 *
 * Every method takes the request message, or a plain object with some of its fields
 * (`{ sessionKey: "s1" }`), and resolves to the response message; streams are
 * `AsyncIterable`s. Failures are {@link BatonError}s.
 *
 * What it adds over raw stubs:
 * - appends and creates (`createSession`, `forkSession`, `requestHandoff`) get an idempotency
 *   key when they have none, and are retried with it: a retry returns what the first attempt
 *   did;
 * - calls refused by the server (UNAVAILABLE, RESOURCE_EXHAUSTED), and reads, appends,
 *   creates and handoff transitions (a repeated one returns the handoff unchanged) whose
 *   connection was lost before the answer, are retried with exponential backoff and jitter,
 *   never sooner than the server's `google.rpc.RetryInfo` asks;
 * - `streamEntries` and `watchHandoffs` reconnect after a lost connection or a server restart
 *   and continue after the last seq / cursor they delivered: every item exactly once, in order;
 * - a default deadline on unary calls, the `x-baton-tenant` and `authorization` headers, and
 *   the W3C trace context of the active OpenTelemetry span when the application uses
 *   `@opentelemetry/api`.
 *
 * @example
 * ```ts
 * const client = new BatonClient("localhost:50051", { tenant: "acme" });
 * const session = await client.createSession({ agent: "planner" });
 * await client.appendEntries({
 *   sessionKey: session.sessionKey,
 *   entries: [{ kind: EntryKind.MESSAGE, author: "planner", text: "hello" }],
 * });
 * for await (const entry of client.streamEntries({ sessionKey: session.sessionKey })) {
 *   console.log(entry.seq, entry.text);
 * }
 * await client.close();
 * ```
 */
export class BatonClient {
  /** The base URL the client connects to, e.g. `http://localhost:50051`. */
  readonly baseUrl: string;
  private readonly context: Client<typeof ContextService>;
  private readonly handoffs: Client<typeof HandoffService>;
  private readonly sessions: Http2SessionManager;
  private readonly timeoutMs: number;
  private readonly retry: RetryOptions;
  private readonly closing = new AbortController();
  private closed = false;
  /** The highest `baton-lsn` any call was answered with (16 digits: the greatest string). */
  private position: string | undefined;

  /**
   * Creates a client; the connection opens with the first call.
   *
   * @param target `host:port`, `http://host:port` or `https://host:port`.
   * @param options tenant, API key, TLS, default deadline, retry policy.
   */
  constructor(target: string, options: BatonClientOptions = {}) {
    const tlsOpts = typeof options.tls === "object" ? options.tls : undefined;
    const { baseUrl, secure } = baseUrlOf(target, options.tls !== undefined && options.tls !== false);
    this.baseUrl = baseUrl;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (!(this.timeoutMs >= 0)) {
      throw new RangeError(`BatonClient: timeoutMs must be >= 0, got ${options.timeoutMs}`);
    }
    this.retry = resolveRetry(DEFAULT_RETRY, options.retry);
    const keepaliveMs = options.keepaliveMs ?? 30_000;
    this.sessions = new Http2SessionManager(
      baseUrl,
      { pingIntervalMs: keepaliveMs, pingTimeoutMs: Math.min(keepaliveMs, 15_000), pingIdleConnection: false },
      secure ? { ...(tlsOpts ?? {}) } : {},
    );
    const fixed = new Headers(options.headers ?? {});
    if (options.tenant !== undefined && options.tenant !== "") fixed.set("x-baton-tenant", options.tenant);
    if (options.apiKey !== undefined && options.apiKey !== "") fixed.set("authorization", `Bearer ${options.apiKey}`);
    const addHeaders: Interceptor = (next) => (req) => {
      fixed.forEach((value, name) => {
        if (!req.header.has(name)) req.header.set(name, value);
      });
      return next(req);
    };
    if (options.logPosition !== undefined) {
      this.position = normalizePosition(options.logPosition);
      if (this.position === undefined) {
        throw new RangeError(
          `BatonClient: logPosition must be a log position as ${LSN_HEADER} gives it (1 to 16 hexadecimal digits), got ${JSON.stringify(options.logPosition)}`,
        );
      }
    }
    // Read-your-writes: every call carries the highest position the client has been told, and
    // the position each answer carries is kept.
    const trackPosition: Interceptor = (next) => async (req) => {
      if (this.position !== undefined && !req.header.has(MIN_LSN_HEADER)) req.header.set(MIN_LSN_HEADER, this.position);
      const res = await next(req);
      const told = normalizePosition(res.header.get(LSN_HEADER));
      if (told !== undefined && (this.position === undefined || told > this.position)) this.position = told;
      return res;
    };
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager: this.sessions,
      interceptors: [addHeaders, trackPosition, propagateTrace],
    });
    this.context = createClient(ContextService, transport);
    this.handoffs = createClient(HandoffService, transport);
  }

  /**
   * The highest log position the server has told this client of (the `baton-lsn` response
   * header: 16 hexadecimal digits), or undefined before the first write to a server with read
   * replicas. Every call sends it back as `baton-min-lsn` (unless the call's own headers set
   * it), so reads a read replica serves reflect this client's own writes. Pass it to another
   * client as {@link BatonClientOptions.logPosition} to let it read them too.
   */
  logPosition(): string | undefined {
    return this.position;
  }

  /**
   * Closes the connection. Calls and streams still open fail with CANCELLED, and later calls
   * fail at once. Safe to call more than once.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(closedError());
    this.sessions.abort();
  }

  // --- ContextService ---------------------------------------------------------------------

  /**
   * Opens a new session owned by the calling agent (`sessionKey` is generated when empty).
   * Without an `idempotencyKey` the client sets a fresh one, sent on every retry: a retry after
   * a lost answer returns the session the first attempt created. The request passed in is not
   * modified.
   */
  async createSession(request: RequestShape<typeof CreateSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = keyed(CreateSessionRequestSchema, request);
    return this.unary("CreateSession", true, options, (co) => this.context.createSession(req, co));
  }

  /** Returns one session; NOT_FOUND when there is none with that key. */
  async getSession(request: RequestShape<typeof GetSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = create(GetSessionRequestSchema, request);
    return this.unary("GetSession", true, options, (co) => this.context.getSession(req, co));
  }

  /** Lists sessions, newest first, optionally by agent and status, one page at a time. */
  async listSessions(
    request: RequestShape<typeof ListSessionsRequestSchema> = {},
    options?: CallOptions,
  ): Promise<ListSessionsResponse> {
    const req = create(ListSessionsRequestSchema, request);
    return this.unary("ListSessions", true, options, (co) => this.context.listSessions(req, co));
  }

  /**
   * Changes a session's metadata, status, time to live, legal hold (`legalHold`, admin keys
   * only) or retention (`retention: { keepLatest, maxAge }`); unset fields are kept.
   */
  async updateSession(request: RequestShape<typeof UpdateSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = create(UpdateSessionRequestSchema, request);
    return this.unary("UpdateSession", false, options, (co) => this.context.updateSession(req, co));
  }

  /** Closes a session: it stays readable and accepts no more entries. */
  async closeSession(request: RequestShape<typeof CloseSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = create(CloseSessionRequestSchema, request);
    return this.unary("CloseSession", false, options, (co) => this.context.closeSession(req, co));
  }

  /**
   * Appends a batch of entries atomically; they get consecutive sequence numbers. Entries may
   * give their content as `text` or `data` instead of the `content` oneof.
   *
   * Without an `idempotencyKey` the client sets a fresh one (a UUID), and every retry of the
   * call sends the same key, so a retried append never writes twice. The request object passed
   * in is not modified.
   */
  async appendEntries(request: AppendEntriesInit, options?: CallOptions): Promise<AppendEntriesResponse> {
    let req: AppendEntriesRequest;
    if (isMessage(request, AppendEntriesRequestSchema)) {
      req = clone(AppendEntriesRequestSchema, request);
    } else {
      const { entries, ...rest } = request as { entries?: NewEntryInit[] } & Record<string, unknown>;
      req = create(AppendEntriesRequestSchema, rest as MessageInitShape<typeof AppendEntriesRequestSchema>);
      req.entries = (entries ?? []).map(toNewEntry);
    }
    withKey(req);
    return this.unary("AppendEntries", true, options, (co) => this.context.appendEntries(req, co));
  }

  /** Lists a session's entries in sequence order, one page at a time. */
  async listEntries(request: RequestShape<typeof ListEntriesRequestSchema>, options?: CallOptions): Promise<ListEntriesResponse> {
    const req = create(ListEntriesRequestSchema, request);
    return this.unary("ListEntries", true, options, (co) => this.context.listEntries(req, co));
  }

  /**
   * Streams a session's entries after `afterSeq` and, with `follow`, the ones appended later.
   *
   * When the connection is lost or the server restarts, the stream reconnects and continues
   * after the last entry it delivered: the caller sees every entry exactly once, in order.
   * Breaking out of the loop (or aborting `options.signal`) cancels the call.
   */
  streamEntries(request: RequestShape<typeof StreamEntriesRequestSchema>, options?: CallOptions): AsyncIterable<Entry> {
    const base = create(StreamEntriesRequestSchema, request);
    return this.stream<Entry>(options, () => {
      let afterSeq = base.afterSeq;
      let remaining = base.maxEntries; // 0: no limit
      return {
        method: "StreamEntries",
        // With a limit, a stream that broke right after its last entry has nothing left to ask for
        // (maxEntries 0 would mean "no limit").
        open: (co) =>
          base.maxEntries > 0 && remaining === 0
            ? nothing<Entry>()
            : this.context.streamEntries({ ...base, afterSeq, maxEntries: remaining }, co),
        accept: (entry) => {
          if (entry.seq <= afterSeq) return false;
          afterSeq = entry.seq;
          if (remaining > 0) remaining -= 1;
          return true;
        },
      };
    });
  }

  /** Returns the newest entries that fit a token budget, after the latest summary entry. */
  async getContextWindow(
    request: RequestShape<typeof GetContextWindowRequestSchema>,
    options?: CallOptions,
  ): Promise<GetContextWindowResponse> {
    const req = create(GetContextWindowRequestSchema, request);
    return this.unary("GetContextWindow", true, options, (co) => this.context.getContextWindow(req, co));
  }

  /** Full-text search over entries' text, best matches first. */
  async searchEntries(
    request: RequestShape<typeof SearchEntriesRequestSchema>,
    options?: CallOptions,
  ): Promise<SearchEntriesResponse> {
    const req = create(SearchEntriesRequestSchema, request);
    return this.unary("SearchEntries", true, options, (co) => this.context.searchEntries(req, co));
  }

  /**
   * Erases a session for good: its entries, handoffs and idempotency records. Followers'
   * streams end with NOT_FOUND. Fails with FAILED_PRECONDITION while the session is under legal
   * hold. Not retried after a lost answer (the session may be gone already).
   */
  async deleteSession(
    request: RequestShape<typeof DeleteSessionRequestSchema>,
    options?: CallOptions,
  ): Promise<DeleteSessionResponse> {
    const req = create(DeleteSessionRequestSchema, request);
    return this.unary("DeleteSession", false, options, (co) => this.context.deleteSession(req, co));
  }

  /**
   * Starts a new session, owned by `agent`, whose entries 1..`atSeq` (0: the source's newest)
   * are copies of another session's; its `forkedFrom` names the source and seq. Handoffs are
   * not copied. Carries an `idempotencyKey` (fresh unless given) like `createSession`, so a
   * retry returns the first fork instead of making a second.
   */
  async forkSession(request: RequestShape<typeof ForkSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = keyed(ForkSessionRequestSchema, request);
    return this.unary("ForkSession", true, options, (co) => this.context.forkSession(req, co));
  }

  /**
   * Erases the content and metadata of entries (`seqs`), keeping their seq, kind, role, author
   * and timestamps; they read back with `redacted` true and a `redaction` (who, when, why).
   * With `expectedLastSeq` it redacts only while that is the session's newest seq
   * (FAILED_PRECONDITION otherwise): a retraction of exactly the entry appended last.
   */
  async redactEntries(
    request: RequestShape<typeof RedactEntriesRequestSchema>,
    options?: CallOptions,
  ): Promise<RedactEntriesResponse> {
    const req = create(RedactEntriesRequestSchema, request);
    return this.unary("RedactEntries", false, options, (co) => this.context.redactEntries(req, co));
  }

  /**
   * Removes the entries before `beforeSeq`; the session's `firstSeq` moves to the oldest one
   * kept, and reads below it fail with OUT_OF_RANGE. Removing the newest SUMMARY entry needs
   * `force`.
   */
  async compactSession(request: RequestShape<typeof CompactSessionRequestSchema>, options?: CallOptions): Promise<Session> {
    const req = create(CompactSessionRequestSchema, request);
    return this.unary("CompactSession", false, options, (co) => this.context.compactSession(req, co));
  }

  // --- HandoffService ---------------------------------------------------------------------

  /**
   * Asks another agent to take over or join the work on a session. Carries an
   * `idempotencyKey` (fresh unless given), so a retry returns the first handoff instead of
   * requesting a second.
   */
  async requestHandoff(request: RequestShape<typeof RequestHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = keyed(RequestHandoffRequestSchema, request);
    return this.unary("RequestHandoff", true, options, (co) => this.handoffs.requestHandoff(req, co));
  }

  /** Returns one handoff; NOT_FOUND when there is none with that id. */
  async getHandoff(request: RequestShape<typeof GetHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = create(GetHandoffRequestSchema, request);
    return this.unary("GetHandoff", true, options, (co) => this.handoffs.getHandoff(req, co));
  }

  /** Lists handoffs, newest first, by target, requester, session and status. */
  async listHandoffs(
    request: RequestShape<typeof ListHandoffsRequestSchema> = {},
    options?: CallOptions,
  ): Promise<ListHandoffsResponse> {
    const req = create(ListHandoffsRequestSchema, request);
    return this.unary("ListHandoffs", true, options, (co) => this.handoffs.listHandoffs(req, co));
  }

  /** The target agent takes a pending handoff. Repeated on a handoff already there, returns it unchanged (so it is retried). */
  async acceptHandoff(request: RequestShape<typeof AcceptHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = create(AcceptHandoffRequestSchema, request);
    return this.unary("AcceptHandoff", true, options, (co) => this.handoffs.acceptHandoff(req, co));
  }

  /** The target agent declines a pending handoff. Repeated on a handoff already there, returns it unchanged (so it is retried). */
  async rejectHandoff(request: RequestShape<typeof RejectHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = create(RejectHandoffRequestSchema, request);
    return this.unary("RejectHandoff", true, options, (co) => this.handoffs.rejectHandoff(req, co));
  }

  /** The target agent marks an accepted handoff done. Repeated on a handoff already there, returns it unchanged (so it is retried). */
  async completeHandoff(request: RequestShape<typeof CompleteHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = create(CompleteHandoffRequestSchema, request);
    return this.unary("CompleteHandoff", true, options, (co) => this.handoffs.completeHandoff(req, co));
  }

  /** The requesting agent withdraws a pending or accepted handoff. Repeated on a handoff already there, returns it unchanged (so it is retried). */
  async cancelHandoff(request: RequestShape<typeof CancelHandoffRequestSchema>, options?: CallOptions): Promise<Handoff> {
    const req = create(CancelHandoffRequestSchema, request);
    return this.unary("CancelHandoff", true, options, (co) => this.handoffs.cancelHandoff(req, co));
  }

  /**
   * An agent's handoff inbox: its pending handoffs first, then live events of the handoffs it
   * sent or received. After a lost connection or a server restart the stream resumes after the
   * cursor of the last event it delivered: every event exactly once, in order.
   */
  watchHandoffs(request: RequestShape<typeof WatchHandoffsRequestSchema>, options?: CallOptions): AsyncIterable<HandoffEvent> {
    const base = create(WatchHandoffsRequestSchema, request);
    return this.stream<HandoffEvent>(options, () => {
      let afterCursor = base.afterCursor;
      return {
        method: "WatchHandoffs",
        open: (co) => this.handoffs.watchHandoffs({ ...base, afterCursor }, co),
        accept: (event) => {
          if (afterCursor !== undefined && event.cursor <= afterCursor) return false;
          afterCursor = event.cursor;
          return true;
        },
      };
    });
  }

  /**
   * A handoff's context package: the summary first (a SUMMARY entry with seq 0), then the
   * session's entries up to the handoff's `upToSeq` that fit its token budget, in seq order.
   * The package is a snapshot, so after a lost connection the stream is read again and the
   * entries already delivered are skipped.
   */
  streamHandoffContext(
    request: RequestShape<typeof StreamHandoffContextRequestSchema>,
    options?: CallOptions,
  ): AsyncIterable<Entry> {
    const req = create(StreamHandoffContextRequestSchema, request);
    return this.stream<Entry>(options, () => {
      let last: bigint | undefined;
      return {
        method: "StreamHandoffContext",
        open: (co) => this.handoffs.streamHandoffContext(req, co),
        accept: (entry) => {
          if (last !== undefined && entry.seq <= last) return false;
          last = entry.seq;
          return true;
        },
      };
    });
  }

  // --- machinery --------------------------------------------------------------------------

  private async unary<T>(
    method: string,
    safe: boolean,
    options: CallOptions | undefined,
    run: (co: ConnectCallOptions) => Promise<T>,
  ): Promise<T> {
    if (this.closed) throw closedError();
    const policy = resolveRetry(this.retry, options?.retry);
    const timeoutMs = options?.timeoutMs ?? this.timeoutMs;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    const link = linkSignals(options?.signal, this.closing.signal);
    try {
      for (let attempt = 1; ; attempt++) {
        const co = this.attemptOptions(method, timeoutMs, deadline, link.signal, options);
        try {
          return await run(co);
        } catch (reason) {
          await this.pauseBeforeRetry(reason, safe, attempt, policy, deadline, link.signal);
        }
      }
    } finally {
      link.dispose();
    }
  }

  // Each iteration of the returned iterable is its own call, with its own resume state.
  private stream<T>(options: CallOptions | undefined, plan: () => StreamPlan<T>): AsyncIterable<T> {
    return { [Symbol.asyncIterator]: () => this.runStream(options, plan()) };
  }

  private async *runStream<T>(options: CallOptions | undefined, plan: StreamPlan<T>): AsyncGenerator<T, void, undefined> {
    if (this.closed) throw closedError();
    const policy = resolveRetry(this.retry, options?.retry);
    const timeoutMs = options?.timeoutMs ?? 0;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    const link = linkSignals(options?.signal, this.closing.signal);
    let failures = 0;
    try {
      for (;;) {
        const co = this.attemptOptions(plan.method, timeoutMs, deadline, link.signal, options);
        // A reconnect that the server answered with headers is a success: the next failure
        // starts a fresh count.
        co.onHeader = (headers) => {
          if (!headers.has("grpc-status")) failures = 0;
        };
        let yielding = false;
        try {
          for await (const item of plan.open(co)) {
            if (!plan.accept(item)) continue;
            failures = 0;
            yielding = true;
            yield item;
            yielding = false;
          }
          return;
        } catch (reason) {
          if (yielding) throw reason; // thrown into the generator by its consumer
          failures += 1;
          // Streams only read, so a lost connection is always safe to retry.
          await this.pauseBeforeRetry(reason, true, failures, policy, deadline, link.signal);
        }
      }
    } finally {
      link.dispose();
    }
  }

  private attemptOptions(
    method: string,
    timeoutMs: number,
    deadline: number,
    signal: AbortSignal,
    options: CallOptions | undefined,
  ): ConnectCallOptions {
    const co: ConnectCallOptions = { signal };
    if (Number.isFinite(deadline)) {
      const remaining = Math.ceil(deadline - Date.now());
      if (remaining <= 0) {
        throw new BatonError("DEADLINE_EXCEEDED", `${method}: the deadline of ${timeoutMs} ms was exceeded`);
      }
      co.timeoutMs = remaining;
    }
    if (options?.headers !== undefined) co.headers = options.headers;
    return co;
  }

  // Throws the failure as a BatonError unless it may be retried; otherwise waits the backoff.
  private async pauseBeforeRetry(
    reason: unknown,
    safe: boolean,
    attempt: number,
    policy: RetryOptions,
    deadline: number,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.closed) throw closedError();
    const kind = classify(reason, signal.aborted);
    if (signal.aborted) throw cancelled();
    // A connection lost before the answer is UNAVAILABLE, whatever the transport called it.
    const err =
      kind === "lost"
        ? transportError("the connection was lost before the answer", reason)
        : kind === "tls"
          ? transportError("the TLS handshake failed", reason)
          : toBatonError(reason);
    const retryable = kind === "rejected" || (kind === "lost" && safe);
    if (!retryable || attempt >= policy.maxAttempts) throw err;
    const wait = backoffMs(policy, attempt, err.retryDelayMs);
    if (Date.now() + wait >= deadline) throw err;
    try {
      await sleep(wait, signal);
    } catch {
      throw this.closed ? closedError() : cancelled();
    }
  }
}

// Every RPC of the two services has a method: adding an RPC to the protos breaks this line
// until the client gets one.
type MissingMethods = Exclude<
  keyof (typeof ContextService)["method"] | keyof (typeof HandoffService)["method"],
  keyof BatonClient
>;
const everyRpcHasAMethod: [MissingMethods] extends [never] ? true : MissingMethods = true;
void everyRpcHasAMethod;
