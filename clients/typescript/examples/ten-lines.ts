// The ten-line example of the README (kept here so the tests compile and run it).
import { BatonClient, textOf } from "@baton/client";
import { EntryKind, HandoffType } from "@baton/client/v1";

const client = new BatonClient(process.env.BATON_TARGET ?? "localhost:50051", { tenant: "acme" });
const { sessionKey } = await client.createSession({ agent: "planner" });
await client.appendEntries({ sessionKey, entries: [{ kind: EntryKind.MESSAGE, author: "planner", text: "Plan: migrate" }] });
for await (const entry of client.streamEntries({ sessionKey })) console.log(`${entry.seq} ${textOf(entry)}`);
const handoff = await client.requestHandoff({ sessionKey, fromAgent: "planner", toAgent: "coder", type: HandoffType.FULL_HANDOFF });
await client.acceptHandoff({ handoffId: handoff.handoffId, agent: "coder" });
for await (const entry of client.streamHandoffContext({ handoffId: handoff.handoffId })) console.log(`${entry.seq} ${textOf(entry)}`);
await client.close();
