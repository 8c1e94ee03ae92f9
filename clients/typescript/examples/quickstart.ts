// Quickstart: a planner agent opens a session, appends context while a second agent follows the
// stream, then hands the work off; the coder accepts from its inbox and reads the context package.
//
//   batond &                                   # gRPC on localhost:50051
//   npx tsx examples/quickstart.ts             # or compile with tsc and run with node
//   BATON_TARGET=host:port ...                 # another server
import { BatonClient, textOf } from "@baton/client";
import { EntryKind, HandoffEventType, HandoffType } from "@baton/client/v1";

const target = process.env.BATON_TARGET ?? "localhost:50051";
const planner = new BatonClient(target, { tenant: "quickstart" });
const coder = new BatonClient(target, { tenant: "quickstart" });

try {
  // 1. Open a session (the key is generated).
  const session = await planner.createSession({ agent: "planner", metadata: { task: "schema migration" } });
  const sessionKey = session.sessionKey;
  console.log(`session ${sessionKey} opened by ${session.owner}`);

  // 2. Follow the session's stream while the planner writes to it.
  const following = (async () => {
    for await (const entry of coder.streamEntries({ sessionKey, follow: true })) {
      console.log(`  streamed #${entry.seq} ${entry.author}: ${textOf(entry)}`);
      if (entry.seq === 3n) break; // stops the stream
    }
  })();

  // 3. Append context; seqs are 1, 2, 3. A retried append never writes twice.
  const appended = await planner.appendEntries({
    sessionKey,
    entries: [
      { kind: EntryKind.MESSAGE, role: "user", author: "planner", text: "Migrate the orders table to v2" },
      { kind: EntryKind.TOOL_CALL, role: "tool", author: "planner", text: "psql -f migrate_orders.sql" },
      { kind: EntryKind.MESSAGE, role: "assistant", author: "planner", text: "Schema done; the backfill is left" },
    ],
  });
  console.log(`appended seqs ${appended.firstSeq}..${appended.lastSeq}`);
  await following;

  // 4. Hand the work off to the coder.
  const handoff = await planner.requestHandoff({
    sessionKey,
    fromAgent: "planner",
    toAgent: "coder",
    type: HandoffType.FULL_HANDOFF,
    instructions: "Run the backfill and verify the row counts",
  });
  console.log(`handoff ${handoff.handoffId} requested (snapshot up to seq ${handoff.upToSeq})`);

  // 5. The coder finds it in its inbox, accepts, and reads the context package.
  for await (const event of coder.watchHandoffs({ agent: "coder" })) {
    if (event.type === HandoffEventType.CREATED && event.handoff?.handoffId === handoff.handoffId) break;
  }
  const accepted = await coder.acceptHandoff({ handoffId: handoff.handoffId, agent: "coder" });
  console.log(`coder accepted: "${accepted.instructions}"`);
  for await (const entry of coder.streamHandoffContext({ handoffId: handoff.handoffId })) {
    if (entry.kind === EntryKind.SUMMARY) {
      console.log(`  summary: ${(textOf(entry) ?? "").split("\n")[0]}`);
    } else {
      console.log(`  context #${entry.seq} ${entry.author}: ${textOf(entry)}`);
    }
  }
  const owner = (await coder.getSession({ sessionKey })).owner;
  console.log(`session ${sessionKey} is now owned by ${owner}`);
} finally {
  await planner.close();
  await coder.close();
}
