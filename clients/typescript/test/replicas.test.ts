// Read-your-writes through a read replica: batond reads from a replica that is held back (it
// applies nothing written after it was made), so a read it serves misses every write of the
// test, and only a client that sends its log position back (baton-min-lsn) is served by the
// primary.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { BatonClient, BatonError, MIN_LSN_HEADER } from "@baton/client";
import { EntryKind } from "@baton/client/v1";
import { Batond, sleep, startReplicaBatond } from "./helpers.js";

let server: Batond;

before(async () => {
  server = await startReplicaBatond();
});

after(async () => {
  await server.dispose();
});

async function keys(client: BatonClient): Promise<string[]> {
  return (await client.listSessions()).sessions.map((s) => s.sessionKey);
}

test("reads follow the client's own writes past a held-back read replica", async () => {
  const tenant = `ts-replica-${randomUUID().slice(0, 12)}`;
  const open = (options: { logPosition?: string } = {}) => new BatonClient(server.target, { tenant, ...options });

  // Until batond's first probe found the replica, reads go to the primary; a read the replica
  // serves answers with the position it replayed, so a fresh client has one after it.
  for (const deadline = Date.now() + 20_000; ; ) {
    const probe = open();
    await probe.listSessions();
    const served = probe.logPosition() !== undefined;
    await probe.close();
    if (served) break;
    assert.ok(Date.now() < deadline, "batond never served a read from the read replica");
    await sleep(100);
  }

  const a = open();
  const b = open();
  try {
    assert.equal(a.logPosition(), undefined);
    const s = await a.createSession({ agent: "writer" });
    const created = a.logPosition();
    assert.match(created ?? "", /^[0-9A-F]{16}$/);
    await a.appendEntries({ sessionKey: s.sessionKey, entries: [{ kind: EntryKind.MESSAGE, author: "writer", text: "hi" }] });
    const appended = a.logPosition()!;
    assert.ok(appended >= created!, `${created} then ${appended}`);
    assert.ok((await keys(a)).includes(s.sessionKey), "A sent its position: the primary served it");

    assert.ok(!(await keys(b)).includes(s.sessionKey), "B has no position: the held-back replica served it");
    const replayed = b.logPosition();
    assert.ok(replayed !== undefined && replayed < created!, `B's position ${replayed} is the replica's`);

    const handed = open({ logPosition: appended });
    try {
      assert.equal(handed.logPosition(), appended);
      assert.ok((await keys(handed)).includes(s.sessionKey), "a handed-over position reads A's writes");
    } finally {
      await handed.close();
    }
    const short = open({ logPosition: "16b3748" });
    assert.equal(short.logPosition(), "00000000016B3748");
    await short.close();
    assert.throws(() => open({ logPosition: "0/16B3748" }), RangeError);

    // A position the call sets itself is sent instead of the client's; a bad one is refused.
    const refused = await a.listSessions({}, { headers: { [MIN_LSN_HEADER]: "xyz" } }).then(
      () => assert.fail("a bad baton-min-lsn was accepted"),
      (err: unknown) => err,
    );
    assert.ok(refused instanceof BatonError && refused.code === "INVALID_ARGUMENT", String(refused));
  } finally {
    await a.close();
    await b.close();
  }
});
