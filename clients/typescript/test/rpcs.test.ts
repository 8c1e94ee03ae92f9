// Every RPC once, the error type, tenants, idempotency keys and close(), against a real batond.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { BatonClient, BatonError, textOf } from "@baton/client";
import {
  AppendEntriesRequestSchema,
  ContextService,
  EntryKind,
  HandoffEventType,
  HandoffService,
  HandoffStatus,
  HandoffType,
  SessionStatus,
} from "@baton/client/v1";
import type { Entry, HandoffEvent } from "@baton/client/v1";
import { Batond, rejection, take } from "./helpers.js";

let server: Batond;

before(async () => {
  server = await Batond.start();
});

after(async () => {
  await server.dispose();
});

function msg(author: string, text: string) {
  return { kind: EntryKind.MESSAGE, role: "assistant", author, text };
}

// Records which client methods a test called, to check that it called every RPC.
function recording(client: BatonClient): { client: BatonClient; called: Set<string> } {
  const called = new Set<string>();
  const proxy = new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof prop === "string" && typeof value === "function") {
        return (...args: unknown[]) => {
          called.add(prop);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return value;
    },
  });
  return { client: proxy, called };
}

describe("every RPC", () => {
  test("each RPC of ContextService and HandoffService has a camelCase method", () => {
    const client = new BatonClient(server.target);
    const names = [...ContextService.methods, ...HandoffService.methods].map((m) => m.localName);
    assert.equal(names.length, 23);
    for (const name of names) {
      assert.equal(typeof (client as unknown as Record<string, unknown>)[name], "function", name);
    }
    void client.close();
  });

  test("a session and two agents go through every RPC once", async () => {
    const { client, called } = recording(new BatonClient(server.target, { tenant: "every-rpc" }));
    try {
      const session = await client.createSession({ sessionKey: "rpc-s1", agent: "planner", metadata: { repo: "baton" } });
      assert.equal(session.sessionKey, "rpc-s1");
      assert.equal(session.owner, "planner");
      assert.equal(session.tenant, "every-rpc");
      assert.deepEqual(session.metadata, { repo: "baton" });

      const got = await client.getSession({ sessionKey: "rpc-s1" });
      assert.equal(got.status, SessionStatus.ACTIVE);

      const listed = await client.listSessions({ agent: "planner" });
      assert.deepEqual(listed.sessions.map((s) => s.sessionKey), ["rpc-s1"]);

      const updated = await client.updateSession({ sessionKey: "rpc-s1", metadata: { repo: "baton", step: 2 } });
      assert.deepEqual(updated.metadata, { repo: "baton", step: 2 });

      const appended = await client.appendEntries({
        sessionKey: "rpc-s1",
        entries: [
          msg("planner", "Plan: migrate the schema to v2"),
          { kind: EntryKind.TOOL_CALL, role: "tool", author: "planner", text: "run migrations" },
          msg("planner", "The migration finished without errors"),
        ],
      });
      assert.equal(appended.firstSeq, 1n);
      assert.equal(appended.lastSeq, 3n);
      assert.deepEqual(appended.entries.map((e) => e.seq), [1n, 2n, 3n]);

      const page = await client.listEntries({ sessionKey: "rpc-s1", afterSeq: 1n });
      assert.deepEqual(page.entries.map((e) => e.seq), [2n, 3n]);

      const replay: Entry[] = [];
      for await (const e of client.streamEntries({ sessionKey: "rpc-s1" })) replay.push(e);
      assert.deepEqual(replay.map((e) => textOf(e)), [
        "Plan: migrate the schema to v2",
        "run migrations",
        "The migration finished without errors",
      ]);

      const window = await client.getContextWindow({ sessionKey: "rpc-s1", maxTokens: 4000 });
      assert.equal(window.lastSeq, 3n);
      assert.equal(window.entries.length, 3);
      assert.equal(window.truncated, false);

      const found = await client.searchEntries({ sessionKey: "rpc-s1", query: "migration" });
      assert.ok(found.hits.length >= 1, "search finds the entry");
      assert.match(found.hits[0]!.snippet, /\[/);

      const handoff = await client.requestHandoff({
        sessionKey: "rpc-s1",
        fromAgent: "planner",
        toAgent: "coder",
        type: HandoffType.FULL_HANDOFF,
        instructions: "Finish the migration",
      });
      assert.equal(handoff.status, HandoffStatus.PENDING);
      assert.equal(handoff.upToSeq, 3n);

      const inbox = await take(client.watchHandoffs({ agent: "coder" }), 1);
      assert.equal(inbox[0]!.type, HandoffEventType.CREATED);
      assert.equal(inbox[0]!.handoff?.handoffId, handoff.handoffId);

      assert.equal((await client.getHandoff({ handoffId: handoff.handoffId })).instructions, "Finish the migration");
      const mine = await client.listHandoffs({ toAgent: "coder" });
      assert.deepEqual(mine.handoffs.map((h) => h.handoffId), [handoff.handoffId]);

      const accepted = await client.acceptHandoff({ handoffId: handoff.handoffId, agent: "coder" });
      assert.equal(accepted.status, HandoffStatus.ACCEPTED);
      assert.equal((await client.getSession({ sessionKey: "rpc-s1" })).owner, "coder");

      const pkg: Entry[] = [];
      for await (const e of client.streamHandoffContext({ handoffId: handoff.handoffId })) pkg.push(e);
      assert.equal(pkg[0]!.kind, EntryKind.SUMMARY);
      assert.equal(pkg[0]!.seq, 0n);
      assert.deepEqual(pkg.slice(1).map((e) => e.seq), [1n, 2n, 3n]);

      const done = await client.completeHandoff({ handoffId: handoff.handoffId, agent: "coder" });
      assert.equal(done.status, HandoffStatus.COMPLETED);

      const second = await client.requestHandoff({
        sessionKey: "rpc-s1",
        fromAgent: "coder",
        toAgent: "reviewer",
        type: HandoffType.CONTEXT_TRANSFER,
      });
      const rejected = await client.rejectHandoff({ handoffId: second.handoffId, agent: "reviewer", reason: "busy" });
      assert.equal(rejected.status, HandoffStatus.REJECTED);
      assert.equal(rejected.reason, "busy");

      const third = await client.requestHandoff({
        sessionKey: "rpc-s1",
        fromAgent: "coder",
        toAgent: "reviewer",
        type: HandoffType.COLLABORATION,
      });
      const cancelled = await client.cancelHandoff({ handoffId: third.handoffId, agent: "coder", reason: "done already" });
      assert.equal(cancelled.status, HandoffStatus.CANCELLED);

      const fork = await client.forkSession({ sessionKey: "rpc-s1", atSeq: 2n, newSessionKey: "rpc-s1-fork", agent: "coder" });
      assert.equal(fork.forkedFrom?.sessionKey, "rpc-s1");
      const redacted = await client.redactEntries({ sessionKey: "rpc-s1-fork", seqs: [1n], reason: "test", agent: "coder" });
      assert.equal(redacted.entries[0]!.redacted, true);
      const compacted = await client.compactSession({ sessionKey: "rpc-s1-fork", beforeSeq: 2n });
      assert.equal(compacted.firstSeq, 2n);
      const deleted = await client.deleteSession({ sessionKey: "rpc-s1-fork" });
      assert.equal(deleted.deletedEntries, 1n);

      const closed = await client.closeSession({ sessionKey: "rpc-s1" });
      assert.equal(closed.status, SessionStatus.CLOSED);

      const all = [...ContextService.methods, ...HandoffService.methods].map((m) => m.localName).sort();
      assert.deepEqual([...called].filter((n) => all.includes(n)).sort(), all);
    } finally {
      await client.close();
    }
  });
});

describe("errors", () => {
  test("an unknown session or handoff is a BatonError with code NOT_FOUND", async () => {
    const client = new BatonClient(server.target);
    try {
      const err = await rejection(client.getSession({ sessionKey: "no-such-session" }));
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "NOT_FOUND");
      assert.equal(err.grpcCode, 5);
      assert.match(err.message, /no-such-session/);
      assert.deepEqual(err.fieldViolations, []);
      assert.match(String(err), /^BatonError \[NOT_FOUND\]: /);

      const err2 = await rejection(client.getHandoff({ handoffId: "no-such-handoff" }));
      assert.ok(err2 instanceof BatonError);
      assert.equal(err2.code, "NOT_FOUND");
    } finally {
      await client.close();
    }
  });

  test("bad input is INVALID_ARGUMENT with every field violation", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "bad-input", agent: "planner" });
      const err = await rejection(
        client.appendEntries({
          sessionKey: "bad-input",
          entries: [
            { kind: EntryKind.UNSPECIFIED, author: "planner", text: "no kind" },
            { kind: EntryKind.MESSAGE, author: "", text: "no author" },
          ],
        }),
      );
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "INVALID_ARGUMENT");
      const fields = err.fieldViolations.map((v) => v.field);
      assert.ok(fields.includes("entries[0].kind"), fields.join(","));
      assert.ok(fields.includes("entries[1].author"), fields.join(","));
      for (const v of err.fieldViolations) assert.ok(v.description.length > 0);
      // Nothing was written.
      assert.equal((await client.getSession({ sessionKey: "bad-input" })).lastSeq, 0n);

      const err2 = await rejection(client.createSession({ agent: "" }));
      assert.ok(err2 instanceof BatonError);
      assert.equal(err2.code, "INVALID_ARGUMENT");
      assert.deepEqual(err2.fieldViolations.map((v) => v.field), ["agent"]);
    } finally {
      await client.close();
    }
  });

  test("a taken session key is ALREADY_EXISTS and a seq mismatch FAILED_PRECONDITION", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "taken", agent: "a" });
      const dup = await rejection(client.createSession({ sessionKey: "taken", agent: "a" }));
      assert.ok(dup instanceof BatonError);
      assert.equal(dup.code, "ALREADY_EXISTS");
      const pre = await rejection(
        client.appendEntries({ sessionKey: "taken", expectedLastSeq: 7n, entries: [msg("a", "x")] }),
      );
      assert.ok(pre instanceof BatonError);
      assert.equal(pre.code, "FAILED_PRECONDITION");
      assert.ok(pre.preconditionViolations.length >= 1);
    } finally {
      await client.close();
    }
  });
});

describe("tenants and idempotency", () => {
  test("the tenant header separates data", async () => {
    const a = new BatonClient(server.target, { tenant: "tenant-a" });
    const b = new BatonClient(`http://${server.target}`, { tenant: "tenant-b" });
    try {
      await a.createSession({ sessionKey: "shared-name", agent: "x" });
      assert.equal((await a.getSession({ sessionKey: "shared-name" })).tenant, "tenant-a");
      const err = await rejection(b.getSession({ sessionKey: "shared-name" }));
      assert.ok(err instanceof BatonError);
      assert.equal(err.code, "NOT_FOUND");
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("appendEntries sets a fresh idempotency key and leaves the caller's request alone", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "idem", agent: "a" });
      // A message built with create() (content as the oneof), rather than a plain object.
      const req = create(AppendEntriesRequestSchema, {
        sessionKey: "idem",
        entries: [{ kind: EntryKind.MESSAGE, author: "a", content: { case: "text", value: "one" } }],
      });
      const r1 = await client.appendEntries(req);
      const r2 = await client.appendEntries(req);
      assert.equal(req.idempotencyKey, "", "the request object is not modified");
      const k1 = r1.entries[0]!.idempotencyKey;
      const k2 = r2.entries[0]!.idempotencyKey;
      assert.match(k1, /^[0-9a-f-]{36}$/);
      assert.notEqual(k1, k2, "each call gets its own key");
      assert.deepEqual([r1.lastSeq, r2.lastSeq], [1n, 2n]);

      // The same explicit key twice writes once and returns the first result.
      const e1 = await client.appendEntries({ sessionKey: "idem", idempotencyKey: "k-1", entries: [msg("a", "two")] });
      const e2 = await client.appendEntries({ sessionKey: "idem", idempotencyKey: "k-1", entries: [msg("a", "two")] });
      assert.equal(e1.firstSeq, 3n);
      assert.equal(e2.firstSeq, 3n);
      assert.equal((await client.getSession({ sessionKey: "idem" })).lastSeq, 3n);
    } finally {
      await client.close();
    }
  });
});

describe("streams", () => {
  test("afterSeq and maxEntries bound a stream, and each iteration is a call of its own", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "bounded", agent: "a" });
      await client.appendEntries({ sessionKey: "bounded", entries: [1, 2, 3, 4, 5].map((i) => msg("a", `e${i}`)) });
      const stream = client.streamEntries({ sessionKey: "bounded", afterSeq: 1n, maxEntries: 2 });
      const first: Entry[] = [];
      for await (const e of stream) first.push(e);
      const second: Entry[] = [];
      for await (const e of stream) second.push(e);
      assert.deepEqual(first.map((e) => e.seq), [2n, 3n]);
      assert.deepEqual(second.map((e) => e.seq), [2n, 3n]);
      // Breaking out of a following stream ends it.
      const followed = await take(client.streamEntries({ sessionKey: "bounded", follow: true }), 5);
      assert.deepEqual(followed.map((e) => textOf(e)), ["e1", "e2", "e3", "e4", "e5"]);
    } finally {
      await client.close();
    }
  });
});

describe("close", () => {
  test("close() ends open streams and later calls with CANCELLED", async () => {
    const client = new BatonClient(server.target);
    await client.createSession({ sessionKey: "closing", agent: "a" });
    await client.appendEntries({ sessionKey: "closing", entries: [msg("a", "one")] });
    const seen: Entry[] = [];
    const following = (async () => {
      for await (const e of client.streamEntries({ sessionKey: "closing", follow: true })) {
        seen.push(e);
        if (seen.length === 1) void client.close();
      }
    })();
    const err = await rejection(following);
    assert.ok(err instanceof BatonError, String(err));
    assert.equal(err.code, "CANCELLED");
    assert.equal(seen.length, 1);
    const later = await rejection(client.getSession({ sessionKey: "closing" }));
    assert.ok(later instanceof BatonError);
    assert.equal(later.code, "CANCELLED");
    await client.close();
  });

  test("an aborted signal cancels a following stream", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "abort-me", agent: "a" });
      const ctrl = new AbortController();
      const events: HandoffEvent[] = [];
      setTimeout(() => ctrl.abort(), 200);
      const err = await rejection(
        (async () => {
          for await (const ev of client.watchHandoffs({ agent: "nobody" }, { signal: ctrl.signal })) events.push(ev);
        })(),
      );
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "CANCELLED");
      assert.equal(events.length, 0);
    } finally {
      await client.close();
    }
  });
});
