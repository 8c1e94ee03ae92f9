// Retries, resumable streams and deadlines against a real batond that drops answers, restarts
// and crashes.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { BatonClient, BatonError, textOf } from "@baton/client";
import { EntryKind, HandoffEventType, HandoffStatus, HandoffType, SessionStatus } from "@baton/client/v1";
import type { Entry, HandoffEvent } from "@baton/client/v1";
import { Batond, Blackhole, DropFirstAnswerProxy, rejection, sleep } from "./helpers.js";

// Patient enough to ride out a restart of a debug batond.
const PATIENT = { maxAttempts: 60, initialBackoffMs: 50, maxBackoffMs: 500 };

function msg(text: string) {
  return { kind: EntryKind.MESSAGE, author: "writer", text };
}

describe("retries", () => {
  let server: Batond;
  before(async () => {
    server = await Batond.start();
  });
  after(async () => {
    await server.dispose();
  });

  test("an append whose answer was lost is retried with the same key and stored once", async () => {
    const direct = new BatonClient(server.target);
    const proxy = await DropFirstAnswerProxy.start(server.port);
    const client = new BatonClient(proxy.target, { retry: { initialBackoffMs: 20 } });
    try {
      await direct.createSession({ sessionKey: "lost-answer", agent: "writer" });
      const res = await client.appendEntries({ sessionKey: "lost-answer", entries: [msg("only once")] });
      assert.equal(proxy.dropped, 1, "the proxy dropped the first answer");
      assert.ok(proxy.connections >= 2, "the client reconnected");
      assert.equal(res.firstSeq, 1n);
      const stored = await direct.listEntries({ sessionKey: "lost-answer" });
      assert.deepEqual(stored.entries.map((e) => textOf(e)), ["only once"]);
      assert.equal(stored.entries[0]!.idempotencyKey, res.entries[0]!.idempotencyKey);
    } finally {
      await client.close();
      await direct.close();
      await proxy.close();
    }
  });

  test("a write that cannot be repeated safely is not retried after a lost answer", async () => {
    const direct = new BatonClient(server.target);
    const proxy = await DropFirstAnswerProxy.start(server.port);
    const client = new BatonClient(proxy.target, { retry: { initialBackoffMs: 20 } });
    try {
      await direct.createSession({ sessionKey: "closed-once", agent: "writer" });
      const err = await rejection(client.closeSession({ sessionKey: "closed-once" }));
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(proxy.dropped, 1);
      // The server did close it: the caller learns that only by reading again.
      assert.equal((await direct.getSession({ sessionKey: "closed-once" })).status, SessionStatus.CLOSED);
    } finally {
      await client.close();
      await direct.close();
      await proxy.close();
    }
  });

  test("creates and transitions whose answer was lost are retried and happen once", async () => {
    const tenant = `t-${randomUUID()}`;
    const direct = new BatonClient(server.target, { tenant });
    // A fresh proxy per call: each drops the answer of the first call made through it.
    const lossy = async <T>(call: (c: BatonClient) => Promise<T>): Promise<T> => {
      const proxy = await DropFirstAnswerProxy.start(server.port);
      const client = new BatonClient(proxy.target, { tenant, retry: { initialBackoffMs: 20 } });
      try {
        const out = await call(client);
        assert.equal(proxy.dropped, 1, "the proxy dropped the first answer");
        return out;
      } finally {
        await client.close();
        await proxy.close();
      }
    };
    try {
      const session = await lossy((c) => c.createSession({ agent: "writer" }));
      await direct.appendEntries({ sessionKey: session.sessionKey, entries: [msg("one")] });
      const fork = await lossy((c) => c.forkSession({ sessionKey: session.sessionKey, agent: "reader" }));
      assert.equal(fork.forkedFrom?.sessionKey, session.sessionKey);
      const handoff = await lossy((c) =>
        c.requestHandoff({
          sessionKey: session.sessionKey,
          fromAgent: "writer",
          toAgent: "reader",
          type: HandoffType.CONTEXT_TRANSFER,
        }),
      );
      const accepted = await lossy((c) => c.acceptHandoff({ handoffId: handoff.handoffId, agent: "reader" }));
      assert.equal(accepted.status, HandoffStatus.ACCEPTED);

      const sessions = (await direct.listSessions()).sessions.map((s) => s.sessionKey).sort();
      assert.deepEqual(sessions, [session.sessionKey, fork.sessionKey].sort(), "one session and one fork");
      const handoffs = (await direct.listHandoffs({ sessionKey: session.sessionKey })).handoffs;
      assert.deepEqual(handoffs.map((h) => h.handoffId), [handoff.handoffId], "one handoff");
    } finally {
      await direct.close();
    }
  });

  test("a call made while the server is down is retried until it is back", async () => {
    const client = new BatonClient(server.target, { retry: PATIENT, timeoutMs: 60_000 });
    try {
      await client.createSession({ sessionKey: "down-and-up", agent: "writer" });
      await server.stop("SIGKILL");
      const pending = client.appendEntries({ sessionKey: "down-and-up", entries: [msg("while down")] });
      await sleep(300);
      await server.restart();
      const res = await pending;
      assert.equal(res.firstSeq, 1n);
    } finally {
      await client.close();
    }
  });
});

describe("resumable streams", () => {
  test("a following StreamEntries survives a restart of batond and delivers 1..N exactly once", async () => {
    const server = await Batond.start();
    const writer = new BatonClient(server.target, { retry: PATIENT, timeoutMs: 60_000 });
    const reader = new BatonClient(server.target, { retry: PATIENT });
    const N = 40;
    try {
      await writer.createSession({ sessionKey: "follow-restart", agent: "writer" });
      for (let i = 1; i <= 10; i++) {
        await writer.appendEntries({ sessionKey: "follow-restart", entries: [msg(`entry ${i}`)] });
      }
      const seen: Entry[] = [];
      let reachedTen!: () => void;
      const ten = new Promise<void>((resolve) => (reachedTen = resolve));
      const following = (async () => {
        for await (const e of reader.streamEntries({ sessionKey: "follow-restart", follow: true })) {
          seen.push(e);
          if (seen.length === 10) reachedTen();
          if (seen.length === N) break;
        }
      })();
      // If the stream fails first, fail here instead of waiting forever.
      await Promise.race([ten, following.then(() => assert.fail("the stream ended before 10 entries"))]);
      await server.stop("SIGTERM"); // graceful: the stream ends with UNAVAILABLE
      await server.restart();
      for (let i = 11; i <= 20; i++) {
        await writer.appendEntries({ sessionKey: "follow-restart", entries: [msg(`entry ${i}`)] });
      }
      await server.stop("SIGKILL"); // a crash: the connection just breaks
      await server.restart();
      for (let i = 21; i <= N; i++) {
        await writer.appendEntries({ sessionKey: "follow-restart", entries: [msg(`entry ${i}`)] });
      }
      await following;
      assert.deepEqual(
        seen.map((e) => Number(e.seq)),
        Array.from({ length: N }, (_, i) => i + 1),
      );
      assert.deepEqual(
        seen.map((e) => textOf(e)),
        Array.from({ length: N }, (_, i) => `entry ${i + 1}`),
      );
    } finally {
      await reader.close();
      await writer.close();
      await server.dispose();
    }
  });

  test("WatchHandoffs resumes by cursor across restarts: every event exactly once", async () => {
    const server = await Batond.start();
    const agentA = new BatonClient(server.target, { retry: PATIENT, timeoutMs: 60_000 });
    const agentB = new BatonClient(server.target, { retry: PATIENT });
    try {
      await agentA.createSession({ sessionKey: "watched", agent: "alice" });
      await agentA.appendEntries({ sessionKey: "watched", entries: [msg("context")] });
      const request = () =>
        agentA.requestHandoff({
          sessionKey: "watched",
          fromAgent: "alice",
          toAgent: "bob",
          type: HandoffType.CONTEXT_TRANSFER,
        });
      const first = await request();
      const events: HandoffEvent[] = [];
      let notify: () => void = () => undefined;
      const watching = (async () => {
        for await (const ev of agentB.watchHandoffs({ agent: "bob" })) {
          events.push(ev);
          notify();
          if (events.length === 5) break;
        }
      })();
      const until = async (n: number) => {
        const arrived = (async () => {
          while (events.length < n) await new Promise<void>((resolve) => (notify = resolve));
        })();
        await Promise.race([arrived, watching.then(() => assert.fail(`the inbox ended before ${n} events`))]);
      };
      await until(1);
      await server.stop("SIGKILL");
      await server.restart();
      const second = await request();
      await until(2);
      await server.stop("SIGTERM");
      await server.restart();
      const third = await request();
      await agentB.acceptHandoff({ handoffId: third.handoffId, agent: "bob" });
      await agentB.rejectHandoff({ handoffId: second.handoffId, agent: "bob", reason: "no" });
      await watching;
      const cursors = events.map((e) => e.cursor);
      for (let i = 1; i < cursors.length; i++) {
        assert.ok(cursors[i]! > cursors[i - 1]!, `cursors increase: ${cursors.join(",")}`);
      }
      assert.deepEqual(
        events.map((e) => [e.handoff?.handoffId, e.type]),
        [
          [first.handoffId, HandoffEventType.CREATED],
          [second.handoffId, HandoffEventType.CREATED],
          [third.handoffId, HandoffEventType.CREATED],
          [third.handoffId, HandoffEventType.ACCEPTED],
          [second.handoffId, HandoffEventType.REJECTED],
        ],
      );
    } finally {
      await agentB.close();
      await agentA.close();
      await server.dispose();
    }
  });
});

describe("deadlines", () => {
  let server: Batond;
  let hole: Blackhole;
  before(async () => {
    server = await Batond.start();
    hole = await Blackhole.start();
  });
  after(async () => {
    await server.dispose();
    await hole.close();
  });

  test("the client's default deadline ends a call that gets no answer", async () => {
    const client = new BatonClient(hole.target, { timeoutMs: 300 });
    try {
      const started = Date.now();
      const err = await rejection(client.getSession({ sessionKey: "x" }));
      const took = Date.now() - started;
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "DEADLINE_EXCEEDED");
      assert.ok(took >= 250 && took < 5000, `took ${took} ms`);
    } finally {
      await client.close();
    }
  });

  test("a per-call deadline overrides the default", async () => {
    const client = new BatonClient(hole.target, { timeoutMs: 60_000 });
    try {
      const started = Date.now();
      const err = await rejection(client.listSessions({}, { timeoutMs: 200 }));
      assert.ok(err instanceof BatonError);
      assert.equal(err.code, "DEADLINE_EXCEEDED");
      assert.ok(Date.now() - started < 5000);
    } finally {
      await client.close();
    }
  });

  test("a following stream with a deadline delivers what it can, then DEADLINE_EXCEEDED", async () => {
    const client = new BatonClient(server.target);
    try {
      await client.createSession({ sessionKey: "deadline-stream", agent: "writer" });
      await client.appendEntries({ sessionKey: "deadline-stream", entries: [msg("a"), msg("b")] });
      const seen: Entry[] = [];
      const started = Date.now();
      const err = await rejection(
        (async () => {
          for await (const e of client.streamEntries({ sessionKey: "deadline-stream", follow: true }, { timeoutMs: 500 })) {
            seen.push(e);
          }
        })(),
      );
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "DEADLINE_EXCEEDED");
      assert.deepEqual(seen.map((e) => textOf(e)), ["a", "b"]);
      assert.ok(Date.now() - started >= 450);
    } finally {
      await client.close();
    }
  });
});
