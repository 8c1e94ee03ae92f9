/**
 * `@baton/client/openai-agents`: Baton as the durable, shared session store of the OpenAI Agents
 * SDK for TypeScript (`@openai/agents-core`).
 *
 * {@link BatonSession} implements the SDK's `Session` interface on one Baton session: every
 * conversation item is one entry whose text is the item's JSON, so `getItems()` returns exactly
 * what `addItems()` stored, in order, whichever process or replica wrote it.
 *
 * ```ts
 * import { Agent, run } from "@openai/agents";
 * import { BatonSession } from "@baton/client/openai-agents";
 *
 * const session = new BatonSession("user-42", { target: "localhost:50051", agent: "support" });
 * await run(agent, "Where is my order?", { session });
 * ```
 *
 * The mapping is the one of the Python adapter (`baton.integrations.openai_agents`): the same
 * session keys, entry kinds, roles and authors, idempotency, `popItem` and `clearSession`. The
 * two SDKs shape their items differently (agents-core's protocol items here, Responses API items
 * in Python), so each language stores its own media type; this module also reads the Python
 * adapter's items, converting messages, function calls and their outputs, and passing any other
 * item on as an `unknown` item whose `providerData` is the Responses item.
 *
 * Only types come from `@openai/agents-core` (an optional peer dependency): importing this module
 * loads nothing of the SDK.
 *
 * @packageDocumentation
 */
import { createHash, randomUUID } from "node:crypto";
import type { AgentInputItem, Session } from "@openai/agents-core";
import { BatonClient } from "./client.js";
import type { BatonClientOptions } from "./client.js";
import { BatonError } from "./errors.js";
import { EntryKind } from "./gen/baton/v1/common_pb.js";
import type { Entry } from "./gen/baton/v1/common_pb.js";

/**
 * The media type of the entries that hold an item written by this adapter: the entry's text is
 * the item's JSON as `@openai/agents-core` shapes it (`{"type":"function_call","callId":...}`).
 */
export const ITEM_MEDIA_TYPE = "application/vnd.baton.openai-agents-js.item+json";

/**
 * The media type of the items the Python adapter writes: Responses API input items
 * (`{"type":"function_call","call_id":...}`), converted when read here.
 */
export const PYTHON_ITEM_MEDIA_TYPE = "application/vnd.baton.openai-agents.item+json";

/** Options of {@link BatonSession}: `client`, or `target` and any {@link BatonClientOptions}. */
export interface BatonSessionOptions extends BatonClientOptions {
  /**
   * The client to use (it may be shared by many sessions; the session does not close it). Without
   * one the session makes its own client for `target` and closes it in {@link BatonSession.close}.
   */
  client?: BatonClient;
  /** `host:port` of batond when no `client` is given (default `BATON_TARGET`, else `localhost:50051`). */
  target?: string;
  /**
   * The agent that owns the session when this session creates it, and the author of every entry,
   * redaction and compaction it makes (default `"agent"`). An API key bound to an agent needs
   * that agent here.
   */
  agent?: string;
}

// The most entries AppendEntries takes in one batch.
const MAX_BATCH = 1000;
// ListEntries' largest page.
const PAGE = 1000;
// How often a read, popItem or a repeatable write starts over after losing a race (or after
// UNAVAILABLE, for the writes the client does not retry itself) before giving up.
const ATTEMPTS = 50;
const VALID_KEY = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * The Baton session key of an SDK session id: the id itself when it is a valid Baton key (ASCII
 * letters, digits and `. _ : @ -`, at most 128 characters), else `oai-sha256-` and the hex
 * SHA-256 of its UTF-8 bytes. The Python adapter maps ids the same way.
 */
export function sessionKeyFor(sessionId: string): string {
  return VALID_KEY.test(sessionId) ? sessionId : `oai-sha256-${createHash("sha256").update(sessionId, "utf8").digest("hex")}`;
}

/**
 * An OpenAI Agents SDK `Session` stored in Baton: pass it as `run(agent, input, { session })`.
 *
 * - One SDK session is one Baton session ({@link sessionKeyFor} gives its key). It is created,
 *   owned by `agent`, on the first `addItems`; before that it reads as empty.
 * - `addItems` is one AppendEntries (atomic: the items get consecutive seqs; split only beyond
 *   1000 items) with an idempotency key drawn once per call, which every retry of the client
 *   (after UNAVAILABLE, a connection lost before the answer, a restarting batond) carries, so it
 *   is stored once. When the call fails anyway, the next `addItems` of the same items reuses the
 *   key: a retried call never duplicates history.
 * - `popItem` retracts exactly the newest item (RedactEntries with `expectedLastSeq`; see
 *   {@link BatonSession.popItem} for why that is race-safe).
 * - `clearSession` compacts the session: the stored entries are erased; the Baton session, its
 *   key, owner, handoffs and seq counter remain, and items added later are its new history.
 * - Redacted and compacted entries never come back; entries that are not items (other Baton
 *   clients writing to the same session) are skipped.
 */
export class BatonSession implements Session {
  /** The client the session talks through. */
  readonly client: BatonClient;
  /** The SDK's session id. */
  readonly sessionId: string;
  /** The Baton session key ({@link sessionKeyFor} of the id). */
  readonly sessionKey: string;
  /** The agent that owns the session and authors its entries. */
  readonly agent: string;
  private readonly ownsClient: boolean;
  // The fingerprint and idempotency key of the last addItems that failed.
  private failedAdd: { fingerprint: string; key: string } | undefined;

  /**
   * @param sessionId the SDK's session id.
   * @param options `client`, or `target` and client options (tenant, API key, TLS, ...); `agent`.
   */
  constructor(sessionId: string, options: BatonSessionOptions = {}) {
    const { client, target, agent, ...clientOptions } = options;
    if (client !== undefined && (target !== undefined || Object.keys(clientOptions).length > 0)) {
      throw new TypeError("BatonSession: pass either client or target and client options, not both");
    }
    this.sessionId = sessionId;
    this.sessionKey = sessionKeyFor(sessionId);
    this.agent = agent ?? "agent";
    this.ownsClient = client === undefined;
    this.client = client ?? new BatonClient(target ?? process.env.BATON_TARGET ?? "localhost:50051", clientOptions);
  }

  /** The SDK's session id. */
  async getSessionId(): Promise<string> {
    return this.sessionId;
  }

  /**
   * The session's items, oldest first: all of them, or the newest `limit` (none when `limit` is
   * 0 or less, as in the SDK's MemorySession). A consistent snapshot: the items up to the
   * session's last seq when the call began.
   */
  async getItems(limit?: number): Promise<AgentInputItem[]> {
    if (limit !== undefined && !(limit > 0)) return [];
    const { tail } = await this.readTail(limit === undefined ? undefined : Math.floor(limit));
    return tail.map((s) => s.item);
  }

  /** Appends the items in one AppendEntries (see the class's note on idempotency). */
  async addItems(items: AgentInputItem[]): Promise<void> {
    if (items.length === 0) return;
    const entries = items.map((item) => ({ ...entryShape(item), author: this.agent, text: encodeItem(item), mediaType: ITEM_MEDIA_TYPE }));
    const fingerprint = createHash("sha256").update(entries.map((e) => e.text).join("\n")).digest("hex");
    const failed = this.failedAdd;
    this.failedAdd = undefined;
    const key = failed?.fingerprint === fingerprint ? failed.key : `oai-${randomUUID().replaceAll("-", "")}`;
    try {
      for (let start = 0; start < entries.length; start += MAX_BATCH) {
        const chunkKey = start === 0 ? key : `${key}.${start / MAX_BATCH}`;
        await this.append(entries.slice(start, start + MAX_BATCH), chunkKey);
      }
    } catch (err) {
      this.failedAdd = { fingerprint, key };
      throw err;
    }
  }

  /**
   * Retracts the newest item and returns it; undefined when there is none.
   *
   * It reads the session's last seq L and its newest live item (seq s), then redacts `[s]` with
   * `expectedLastSeq: L` and a reason unique to the call. The server checks L under the
   * session's lock, the one appends take, so an `addItems` landing between the read and the
   * redaction makes it fail with FAILED_PRECONDITION and change nothing; the pop then reads again
   * and retracts the item that is newest now. A concurrent pop cannot move L, so both may redact
   * the same entry; the server redacts an entry once and keeps the first redaction's reason, so
   * the loser sees a foreign reason and takes the next item. A lost answer is settled by reading
   * the entry back. Each pop thus removes exactly the item that was newest when it took effect.
   */
  async popItem(): Promise<AgentInputItem | undefined> {
    const reason = `openai-agents popItem ${randomUUID().replaceAll("-", "")}`;
    let lastError: unknown;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const { lastSeq, tail } = await this.readTail(1);
      const newest = tail.at(-1);
      if (newest === undefined) return undefined;
      const seq = newest.entry.seq;
      try {
        const { entries } = await this.client.redactEntries({ sessionKey: this.sessionKey, seqs: [seq], reason, agent: this.agent, expectedLastSeq: lastSeq });
        if (entries[0]?.redaction?.reason === reason) return newest.item;
        // Another pop retracted this entry first: the next one is ours to take.
      } catch (err) {
        if (isCode(err, "UNAVAILABLE", "DEADLINE_EXCEEDED")) {
          // The answer was lost (the client does not repeat a redaction): did it happen?
          if (await this.redactedWith(seq, reason)) return newest.item;
        } else if (!lostRace(err)) {
          throw err;
        }
        lastError = err;
      }
      await backoff(attempt);
    }
    throw lastError ?? new BatonError("ABORTED", `popItem lost ${ATTEMPTS} races in a row on session ${JSON.stringify(this.sessionKey)}`);
  }

  /**
   * Removes every item: compacts the Baton session up to its last seq (CompactSession before
   * last seq + 1, with `force`). The entries are gone for good; the session, its key, owner,
   * handoffs and seq counter remain (deleting it would restart seqs at 1 under the same key and
   * confuse followers resuming a stream after a seq). Items appended after the last seq it read
   * are kept. Fails with FAILED_PRECONDITION while the session is under legal hold.
   */
  async clearSession(): Promise<void> {
    this.failedAdd = undefined;
    let session;
    try {
      session = await this.client.getSession({ sessionKey: this.sessionKey });
    } catch (err) {
      if (isCode(err, "NOT_FOUND")) return;
      throw err;
    }
    const { firstSeq, lastSeq } = session;
    if (lastSeq < (firstSeq > 1n ? firstSeq : 1n)) return;
    await this.repeatable(() => this.client.compactSession({ sessionKey: this.sessionKey, beforeSeq: lastSeq + 1n, force: true }), "NOT_FOUND");
  }

  /** Closes the client if the session made it (not one passed as `options.client`). */
  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }

  // --- machinery -----------------------------------------------------------------------------

  private async append(entries: EntryInit[], idempotencyKey: string): Promise<void> {
    const request = { sessionKey: this.sessionKey, entries, idempotencyKey };
    try {
      await this.client.appendEntries(request);
      return;
    } catch (err) {
      if (!isCode(err, "NOT_FOUND")) throw err;
    }
    // First use (or the session was deleted): create it, then append with the same key.
    await this.repeatable(() => this.client.createSession({ sessionKey: this.sessionKey, agent: this.agent }), "ALREADY_EXISTS");
    await this.client.appendEntries(request);
  }

  // Runs a write that is safe to repeat, retrying UNAVAILABLE (which the client does not retry
  // for such writes: a lost answer may hide a change); `done` codes count as success.
  private async repeatable(call: () => Promise<unknown>, ...done: string[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await call();
        return;
      } catch (err) {
        if (isCode(err, ...done)) return;
        if (!isCode(err, "UNAVAILABLE") || attempt >= ATTEMPTS - 1) throw err;
      }
      await backoff(attempt);
    }
  }

  // The session's last seq and its newest `limit` live items (all when undefined), oldest first,
  // as of that last seq; { 0n, [] } when the session does not exist.
  private async readTail(limit: number | undefined): Promise<{ lastSeq: bigint; tail: Stored[] }> {
    for (let attempt = 0; ; attempt++) {
      try {
        let session;
        try {
          session = await this.client.getSession({ sessionKey: this.sessionKey });
        } catch (err) {
          if (isCode(err, "NOT_FOUND")) return { lastSeq: 0n, tail: [] };
          throw err;
        }
        const floor = (session.firstSeq > 1n ? session.firstSeq : 1n) - 1n;
        const lastSeq = session.lastSeq;
        if (limit === undefined) return { lastSeq, tail: await this.scan(floor, lastSeq + 1n) };
        // Back from the end in growing windows, until enough live items are found.
        let found: Stored[] = [];
        let upper = lastSeq + 1n;
        let window = BigInt(limit);
        for (;;) {
          const lower = upper - 1n - window > floor ? upper - 1n - window : floor;
          found = [...(await this.scan(lower, upper)), ...found];
          if (found.length >= limit || lower <= floor) return { lastSeq, tail: found.slice(-limit) };
          upper = lower + 1n;
          window *= 2n;
        }
      } catch (err) {
        // OUT_OF_RANGE: a concurrent clearSession compacted what was being read.
        if (!isCode(err, "OUT_OF_RANGE") || attempt >= ATTEMPTS - 1) throw err;
      }
    }
  }

  // The live items with after < seq < before.
  private async scan(after: bigint, before: bigint): Promise<Stored[]> {
    const out: Stored[] = [];
    const calls = new Map<string, string>(); // call_id -> name, for the Python adapter's outputs
    let pageToken = "";
    while (after + 1n < before) {
      const page = await this.client.listEntries({ sessionKey: this.sessionKey, afterSeq: after, beforeSeq: before, pageSize: PAGE, pageToken });
      for (const entry of page.entries) {
        const item = itemOf(entry, calls);
        if (item !== undefined) out.push({ entry, item });
      }
      pageToken = page.nextPageToken;
      if (pageToken === "") break;
    }
    return out;
  }

  // Whether entry `seq` was redacted with `reason` (false when it is gone).
  private async redactedWith(seq: bigint, reason: string): Promise<boolean> {
    try {
      const page = await this.client.listEntries({ sessionKey: this.sessionKey, afterSeq: seq - 1n, beforeSeq: seq + 1n });
      return page.entries.some((e) => e.seq === seq && e.redacted && e.redaction?.reason === reason);
    } catch (err) {
      if (isCode(err, "NOT_FOUND", "OUT_OF_RANGE")) return false;
      throw err;
    }
  }
}

type UserContent = Exclude<Extract<AgentInputItem, { role: "user" }>["content"], string>[number];

interface Stored {
  entry: Entry;
  item: AgentInputItem;
}

interface EntryInit {
  kind: EntryKind;
  role: string;
  author: string;
  text: string;
  mediaType: string;
}

function isCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof BatonError && codes.includes(err.code);
}

// Whether a failed RedactEntries lost a race (popItem reads again): entries were appended since
// the read (SEQ_MISMATCH), the entry was compacted away by a clearSession (INVALID_ARGUMENT on
// `seqs`), or the session was deleted.
function lostRace(err: unknown): boolean {
  if (!(err instanceof BatonError)) return false;
  if (err.code === "FAILED_PRECONDITION") return err.preconditionViolations.some((v) => v.type === "SEQ_MISMATCH");
  if (err.code === "INVALID_ARGUMENT") return err.fieldViolations.length > 0 && err.fieldViolations.every((f) => f.field.startsWith("seqs"));
  return err.code === "NOT_FOUND";
}

function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(500, 5 * 2 ** attempt)));
}

/**
 * The entry kind and role of an item, as the Python adapter chooses them: messages are MESSAGE
 * (SYSTEM for `system` and `developer` messages) with the message's role; `*_call` items
 * TOOL_CALL by the `assistant`; `*_result` and `*_output` items TOOL_RESULT by the `tool`;
 * anything else (reasoning, compaction, unknown items) MESSAGE with the item's role or `assistant`.
 */
export function entryShape(item: AgentInputItem): { kind: EntryKind; role: string } {
  const { type, role } = item as { type?: unknown; role?: unknown };
  const r = typeof role === "string" && role !== "" ? role.slice(0, 64) : undefined;
  if (r !== undefined && (type === undefined || type === "message")) {
    return { kind: r === "system" || r === "developer" ? EntryKind.SYSTEM : EntryKind.MESSAGE, role: r };
  }
  if (typeof type === "string") {
    if (type.endsWith("_call") || type === "mcp_approval_request") return { kind: EntryKind.TOOL_CALL, role: "assistant" };
    if (type.endsWith("_result") || type.endsWith("_output") || type === "mcp_list_tools" || type === "mcp_approval_response") {
      return { kind: EntryKind.TOOL_RESULT, role: "tool" };
    }
  }
  return { kind: EntryKind.MESSAGE, role: r ?? "assistant" };
}

// Binary values (an inline image or file given as bytes) are stored as {"$bytes": "<base64>"},
// so they come back as a Uint8Array rather than as an object with numbered keys.
const BYTES = "$bytes";

/** The JSON text of an item, as its entry stores it. */
export function encodeItem(item: AgentInputItem): string {
  return JSON.stringify(item, function (this: Record<string, unknown>, key: string, value: unknown) {
    const raw = this[key]; // before a Buffer's toJSON
    return raw instanceof Uint8Array ? { [BYTES]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("base64") } : value;
  });
}

/**
 * The item an entry holds: undefined for a redacted entry, an entry that is not an item, or one
 * whose JSON does not decode. Items of the Python adapter are converted (see the module's note);
 * `calls` collects their function calls' names, which their outputs need.
 */
export function itemOf(entry: Entry, calls: Map<string, string> = new Map()): AgentInputItem | undefined {
  if (entry.redacted || entry.content.case !== "text") return undefined;
  if (entry.mediaType !== ITEM_MEDIA_TYPE && entry.mediaType !== PYTHON_ITEM_MEDIA_TYPE) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(entry.content.value, (_key, v: unknown) => {
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        const b64 = (v as Record<string, unknown>)[BYTES];
        if (typeof b64 === "string" && Object.keys(v).length === 1) return new Uint8Array(Buffer.from(b64, "base64"));
      }
      return v;
    });
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  return entry.mediaType === ITEM_MEDIA_TYPE ? (value as AgentInputItem) : fromResponsesItem(value as Record<string, unknown>, calls);
}

/**
 * An agents-core item for a Responses API input item (what the Python SDK stores): messages,
 * function calls and function call outputs are converted; any other item becomes an `unknown`
 * item carrying it as `providerData`, the protocol's catch-all for provider items.
 */
function fromResponsesItem(item: Record<string, unknown>, calls: Map<string, string>): AgentInputItem {
  const { type, role } = item;
  const id = typeof item.id === "string" ? { id: item.id } : {};
  if ((type === undefined || type === "message") && typeof role === "string") {
    if (role === "assistant" && Array.isArray(item.content)) {
      const content = (item.content as Array<Record<string, unknown>>).map((part) =>
        part.type === "refusal" ? { type: "refusal" as const, refusal: String(part.refusal) } : { type: "output_text" as const, text: String(part.text ?? "") },
      );
      const status = item.status === "in_progress" || item.status === "incomplete" ? item.status : "completed";
      return { type: "message", role: "assistant", status, content, ...id };
    }
    if ((role === "system" || role === "developer") && typeof item.content === "string") {
      return { type: "message", role: "system", content: item.content, ...id };
    }
    if (role === "user") {
      const content = Array.isArray(item.content) ? (item.content as Array<Record<string, unknown>>).map(userPart) : String(item.content ?? "");
      return { type: "message", role: "user", content, ...id };
    }
  }
  if (type === "function_call" && typeof item.call_id === "string") {
    calls.set(item.call_id, String(item.name));
    const status = item.status === "in_progress" || item.status === "incomplete" ? item.status : "completed";
    return { type: "function_call", callId: item.call_id, name: String(item.name), arguments: String(item.arguments ?? ""), status, ...id };
  }
  if (type === "function_call_output" && typeof item.call_id === "string" && typeof item.output === "string") {
    const name = calls.get(item.call_id) ?? "";
    return { type: "function_call_result", callId: item.call_id, name, status: "completed", output: { type: "text", text: item.output }, ...id };
  }
  return { type: "unknown", providerData: item };
}

// A part of a Responses user message as agents-core shapes it.
function userPart(part: Record<string, unknown>): UserContent {
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  if (part.type === "input_image") {
    const fileId = str(part.file_id);
    const detail = str(part.detail);
    return { type: "input_image", image: str(part.image_url) ?? (fileId === undefined ? undefined : { id: fileId }), ...(detail === undefined ? {} : { detail }) };
  }
  if (part.type === "input_file") {
    const fileId = str(part.file_id);
    const url = str(part.file_url);
    const filename = str(part.filename);
    const file = str(part.file_data) ?? (fileId !== undefined ? { id: fileId } : url !== undefined ? { url } : undefined);
    return { type: "input_file", file, ...(filename === undefined ? {} : { filename }) };
  }
  return { type: "input_text", text: String(part.text ?? "") };
}
