// What the client puts on the wire, seen by a bare HTTP/2 listener that records each request
// and answers with the status the test scripts: headers, deadlines, and retries that honour
// google.rpc.RetryInfo with the same idempotency key. (Everything else runs against batond.)
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack, DurationSchema } from "@bufbuild/protobuf/wkt";
import { BatonClient, BatonError } from "@baton/client";
import { AppendEntriesRequestSchema, AppendEntriesResponseSchema, EntryKind } from "@baton/client/v1";
import { RetryInfoSchema, StatusSchema } from "@baton/client/google/rpc";
import { rejection, ScriptedServer, selfSignedCert } from "./helpers.js";

function grpcPayload(body: Buffer): Buffer {
  assert.equal(body[0], 0, "uncompressed gRPC message");
  return body.subarray(5, 5 + body.readUInt32BE(1));
}

describe("on the wire", () => {
  const srv = new ScriptedServer();
  before(() => srv.start());
  after(() => srv.close());

  test("tenant, API key, deadline and per-call headers are sent; UNAUTHENTICATED surfaces as BatonError", async () => {
    const client = new BatonClient(srv.target, { tenant: "acme", apiKey: "sk-test-123", timeoutMs: 4000 });
    try {
      srv.answers = [{ status: 16, message: "unknown API key" }];
      const err = await rejection(client.getSession({ sessionKey: "s" }, { headers: { "x-request-id": "r1" } }));
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "UNAUTHENTICATED");
      assert.equal(err.message, "unknown API key");
      const h = srv.seen.at(-1)!.headers;
      assert.equal(h[":path"], "/baton.v1.ContextService/GetSession");
      assert.equal(h["x-baton-tenant"], "acme");
      assert.equal(h["authorization"], "Bearer sk-test-123");
      assert.equal(h["x-request-id"], "r1");
      assert.equal(h["content-type"], "application/grpc+proto");
      const timeout = String(h["grpc-timeout"]);
      assert.match(timeout, /^\d+m$/);
      const ms = Number(timeout.slice(0, -1));
      assert.ok(ms > 3000 && ms <= 4000, `grpc-timeout ${timeout}`);
    } finally {
      await client.close();
    }
  });

  test("without tenant and key no such headers are sent", async () => {
    const client = new BatonClient(srv.target);
    try {
      srv.answers = [{ status: 5, message: "nope" }];
      await rejection(client.getSession({ sessionKey: "s" }));
      const h = srv.seen.at(-1)!.headers;
      assert.equal(h["x-baton-tenant"], undefined);
      assert.equal(h["authorization"], undefined);
    } finally {
      await client.close();
    }
  });

  test("UNAVAILABLE with RetryInfo is retried after the delay asked for, with the same idempotency key", async () => {
    const client = new BatonClient(srv.target, { retry: { initialBackoffMs: 1, maxBackoffMs: 1 } });
    try {
      const retryInfo = create(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds: 0n, nanos: 400_000_000 }) });
      const status = create(StatusSchema, {
        code: 14,
        message: "store unreachable",
        details: [anyPack(RetryInfoSchema, retryInfo)],
      });
      const ok = create(AppendEntriesResponseSchema, { firstSeq: 7n, lastSeq: 7n });
      srv.answers = [
        { status: 14, message: "store unreachable", details: toBinary(StatusSchema, status) },
        { status: 8, message: "slow down" },
        { ok: toBinary(AppendEntriesResponseSchema, ok) },
      ];
      const before = srv.seen.length;
      const res = await client.appendEntries({
        sessionKey: "s",
        entries: [{ kind: EntryKind.MESSAGE, author: "a", text: "hi" }],
      });
      assert.equal(res.firstSeq, 7n);
      const attempts = srv.seen.slice(before);
      assert.equal(attempts.length, 3);
      const keys = attempts.map((a) => fromBinary(AppendEntriesRequestSchema, grpcPayload(a.body)).idempotencyKey);
      assert.match(keys[0]!, /^[0-9a-f-]{36}$/);
      assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
      const gap = attempts[1]!.at - attempts[0]!.at;
      assert.ok(gap >= 390, `waited ${gap} ms, RetryInfo asked for 400`);
    } finally {
      await client.close();
    }
  });

  test("other codes are raised at once, with the RetryInfo delay and details decoded", async () => {
    const client = new BatonClient(srv.target);
    try {
      const retryInfo = create(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds: 2n, nanos: 0 }) });
      const status = create(StatusSchema, { code: 9, message: "closed", details: [anyPack(RetryInfoSchema, retryInfo)] });
      srv.answers = [{ status: 9, message: "session is closed", details: toBinary(StatusSchema, status) }];
      const before = srv.seen.length;
      const err = await rejection(client.getSession({ sessionKey: "s" }));
      assert.ok(err instanceof BatonError);
      assert.equal(err.code, "FAILED_PRECONDITION");
      assert.equal(err.retryDelayMs, 2000);
      assert.equal(srv.seen.length - before, 1, "not retried");
    } finally {
      await client.close();
    }
  });

  test("retries give up after maxAttempts with the last error", async () => {
    const client = new BatonClient(srv.target, { retry: { maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 5 } });
    try {
      srv.answers = [
        { status: 14, message: "down 1" },
        { status: 14, message: "down 2" },
        { status: 14, message: "down 3" },
        { status: 14, message: "down 4" },
      ];
      const before = srv.seen.length;
      const err = await rejection(client.listSessions());
      assert.ok(err instanceof BatonError);
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(err.message, "down 3");
      assert.equal(srv.seen.length - before, 3);
      srv.answers = [];
    } finally {
      await client.close();
    }
  });
});

describe("TLS", () => {
  const pem = selfSignedCert();
  const srv = new ScriptedServer(pem);
  before(() => srv.start());
  after(() => srv.close());

  test("an https:// target with the server's CA talks gRPC over TLS", async () => {
    const client = new BatonClient(`https://${srv.target}`, { tls: { ca: pem.cert } });
    try {
      srv.answers = [{ status: 5, message: "over tls" }];
      const err = await rejection(client.getSession({ sessionKey: "s" }));
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "NOT_FOUND");
      assert.equal(err.message, "over tls");
      assert.equal(srv.seen.at(-1)!.headers[":scheme"], "https");
    } finally {
      await client.close();
    }
  });

  test("an untrusted certificate fails at once with UNAVAILABLE, without retries", async () => {
    const client = new BatonClient(srv.target, { tls: true });
    try {
      const before = srv.seen.length;
      const started = Date.now();
      const err = await rejection(client.getSession({ sessionKey: "s" }));
      assert.ok(err instanceof BatonError, String(err));
      assert.equal(err.code, "UNAVAILABLE");
      assert.match(err.message, /TLS/);
      assert.equal(srv.seen.length, before);
      assert.ok(Date.now() - started < 2000, "not retried with backoff");
    } finally {
      await client.close();
    }
  });
});
