// The data lifecycle RPCs against a real batond: delete, fork, redact (and retract-last),
// compact, retention and legal hold.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { BatonClient, BatonError, textOf } from "@baton/client";
import { EntryKind } from "@baton/client/v1";
import { Batond, rejection } from "./helpers.js";

let server: Batond;
let client: BatonClient;
let counter = 0;

before(async () => {
  server = await Batond.start();
  client = new BatonClient(server.target, { tenant: "ts-lifecycle" });
});

after(async () => {
  await client.close();
  await server.dispose();
});

/** A new session owned by `agent` with entries "entry 1" .. "entry n". */
async function seeded(agent: string, n: number): Promise<string> {
  counter += 1;
  const sessionKey = `life-${process.pid}-${counter}`;
  await client.createSession({ sessionKey, agent });
  const entries = Array.from({ length: n }, (_, i) => ({ kind: EntryKind.MESSAGE, role: "assistant", author: agent, text: `entry ${i + 1}` }));
  await client.appendEntries({ sessionKey, entries });
  return sessionKey;
}

async function code(p: Promise<unknown>): Promise<string> {
  const err = await rejection(p);
  assert.ok(err instanceof BatonError, String(err));
  return err.code;
}

describe("data lifecycle", () => {
  test("deleteSession erases the session: reading it afterwards is NOT_FOUND", async () => {
    const key = await seeded("planner", 3);
    const gone = await client.deleteSession({ sessionKey: key });
    assert.equal(gone.deletedEntries, 3n);
    assert.equal(await code(client.getSession({ sessionKey: key })), "NOT_FOUND");
    assert.equal(await code(client.listEntries({ sessionKey: key })), "NOT_FOUND");
    assert.equal(await code(client.deleteSession({ sessionKey: key })), "NOT_FOUND");
  });

  test("forkSession at N copies entries 1..N and records forkedFrom", async () => {
    const source = await seeded("planner", 5);
    const forkKey = `${source}-fork`;
    const fork = await client.forkSession({ sessionKey: source, atSeq: 3n, newSessionKey: forkKey, agent: "explorer" });
    assert.equal(fork.sessionKey, forkKey);
    assert.equal(fork.owner, "explorer");
    assert.equal(fork.lastSeq, 3n);
    assert.deepEqual([fork.forkedFrom?.sessionKey, fork.forkedFrom?.seq], [source, 3n]);

    const copied = (await client.listEntries({ sessionKey: forkKey })).entries;
    assert.deepEqual(copied.map((e) => e.seq), [1n, 2n, 3n]);
    assert.deepEqual(copied.map(textOf), ["entry 1", "entry 2", "entry 3"]);
    const next = await client.appendEntries({ sessionKey: forkKey, entries: [{ kind: EntryKind.MESSAGE, author: "explorer", text: "elsewhere" }] });
    assert.equal(next.firstSeq, 4n);
    assert.equal((await client.getSession({ sessionKey: source })).lastSeq, 5n, "the source is unchanged");
    assert.equal((await client.getSession({ sessionKey: source })).forkedFrom, undefined);

    const grand = await client.forkSession({ sessionKey: forkKey, atSeq: 2n, agent: "planner" });
    assert.ok(grand.sessionKey !== "" && grand.sessionKey !== forkKey, "a key is generated");
    assert.deepEqual([grand.forkedFrom?.sessionKey, grand.forkedFrom?.seq], [forkKey, 2n]);
    const parent = await client.getSession({ sessionKey: grand.forkedFrom!.sessionKey });
    assert.equal(parent.forkedFrom?.sessionKey, source, "the lineage stays visible");
  });

  test("redactEntries empties the content and keeps the seq; a stale expectedLastSeq is FAILED_PRECONDITION", async () => {
    const key = await seeded("planner", 3);
    const r = await client.redactEntries({ sessionKey: key, seqs: [2n], reason: "leaked a password", agent: "planner" });
    assert.deepEqual(r.entries.map((e) => e.seq), [2n]);
    const red = r.entries[0]!;
    assert.equal(red.redacted, true);
    // The content is empty (batond sends an empty text), never the old text or data.
    assert.equal(textOf(red) ?? "", "");
    assert.notEqual(red.content.case, "data");
    assert.equal(red.author, "planner");
    assert.equal(red.kind, EntryKind.MESSAGE);
    assert.equal(red.redaction?.reason, "leaked a password");
    assert.ok(red.redaction?.redactedBy, "redactedBy is set");
    assert.ok(red.redaction?.redactedAt, "redactedAt is set");

    const listed = (await client.listEntries({ sessionKey: key })).entries;
    assert.deepEqual(listed.map((e) => [e.seq, e.redacted, textOf(e) ?? ""]), [
      [1n, false, "entry 1"],
      [2n, true, ""],
      [3n, false, "entry 3"],
    ]);

    const stale = client.redactEntries({ sessionKey: key, seqs: [3n], reason: "retract", agent: "planner", expectedLastSeq: 2n });
    assert.equal(await code(stale), "FAILED_PRECONDITION");
    assert.equal((await client.listEntries({ sessionKey: key, afterSeq: 2n })).entries[0]!.redacted, false, "nothing changed");
    const retracted = await client.redactEntries({ sessionKey: key, seqs: [3n], reason: "retract", agent: "planner", expectedLastSeq: 3n });
    assert.equal(retracted.entries[0]!.redacted, true);
  });

  test("compactSession moves firstSeq; reading below it is OUT_OF_RANGE", async () => {
    const key = await seeded("planner", 5);
    assert.equal((await client.getSession({ sessionKey: key })).firstSeq, 1n);
    const compacted = await client.compactSession({ sessionKey: key, beforeSeq: 3n });
    assert.equal(compacted.firstSeq, 3n);
    assert.equal(compacted.lastSeq, 5n);
    assert.deepEqual((await client.listEntries({ sessionKey: key, afterSeq: 2n })).entries.map((e) => e.seq), [3n, 4n, 5n]);
    assert.equal(await code(client.listEntries({ sessionKey: key, afterSeq: 1n })), "OUT_OF_RANGE");
    const below = (async () => {
      for await (const e of client.streamEntries({ sessionKey: key, afterSeq: 1n })) void e;
    })();
    assert.equal(await code(below), "OUT_OF_RANGE");
  });

  test("a legal hold blocks delete, compaction and redaction until lifted; retention is kept", async () => {
    const key = await seeded("planner", 2);
    assert.equal((await client.updateSession({ sessionKey: key, legalHold: true })).legalHold, true);
    assert.equal(await code(client.deleteSession({ sessionKey: key })), "FAILED_PRECONDITION");
    assert.equal(await code(client.compactSession({ sessionKey: key, beforeSeq: 2n })), "FAILED_PRECONDITION");
    assert.equal(await code(client.redactEntries({ sessionKey: key, seqs: [1n], reason: "r", agent: "planner" })), "FAILED_PRECONDITION");
    assert.equal((await client.listEntries({ sessionKey: key })).entries.length, 2);

    const kept = await client.updateSession({
      sessionKey: key,
      retention: { keepLatest: 100n, maxAge: { seconds: 30n * 86400n } },
    });
    assert.equal(kept.legalHold, true, "an update without legalHold leaves it set");
    assert.equal(kept.retention?.keepLatest, 100n);
    assert.equal(durationMs(kept.retention!.maxAge!), 30 * 86400 * 1000);

    assert.equal((await client.updateSession({ sessionKey: key, legalHold: false })).legalHold, false);
    assert.equal((await client.deleteSession({ sessionKey: key })).deletedEntries, 2n);
  });
});
