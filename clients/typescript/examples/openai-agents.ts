// An OpenAI Agents SDK agent whose conversation lives in Baton, shared by two replicas of the app:
// what one replica's turn stored, the other's next turn reads.
//
// The model here is a scripted stand-in so the example runs without an API key or network; with
// @openai/agents and a real model (`new Agent({ model: "gpt-5.1", ... })`) nothing else changes.
//
//   batond &                                     # gRPC on localhost:50051
//   npx tsx examples/openai-agents.ts            # BATON_TARGET=host:port for another server
import { Agent, Usage, run } from "@openai/agents-core";
import type { AgentInputItem, Model, ModelRequest, ModelResponse } from "@openai/agents-core";
import { BatonSession } from "@baton/client/openai-agents";

// Answers "What is my name?" from the earlier turns it is given; echoes anything else.
const scripted: Model = {
  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const items: AgentInputItem[] = typeof request.input === "string" ? [{ role: "user", content: request.input }] : request.input;
    const said = items.flatMap((i) => (i.type !== undefined && i.type !== "message") || i.role !== "user" ? [] : [String(i.content)]);
    const name = said.map((s) => /My name is (\w+)/.exec(s)?.[1]).find((n) => n !== undefined);
    const last = said.at(-1) ?? "";
    const text = /what is my name/i.test(last) ? `Your name is ${name ?? "not known to me"}.` : `You said: ${last}`;
    return { usage: new Usage(), output: [{ type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text }] }] };
  },
  getStreamedResponse() {
    throw new Error("the scripted model does not stream");
  },
};

const target = process.env.BATON_TARGET ?? "localhost:50051";
const agent = new Agent({ name: "assistant", instructions: "Answer briefly.", model: scripted });
const sessionId = `support-${Date.now()}`;

// Two replicas, each with its own connection to batond, on one session id.
const replicaA = new BatonSession(sessionId, { target, agent: "assistant" });
const replicaB = new BatonSession(sessionId, { target, agent: "assistant" });
try {
  console.log(`replica A: ${(await run(agent, "My name is Ada.", { session: replicaA })).finalOutput}`);
  console.log(`replica B: ${(await run(agent, "What is my name?", { session: replicaB })).finalOutput}`);

  const history = await replicaA.getItems();
  console.log(`history: ${history.length} items`);
  const popped = await replicaA.popItem(); // retracts exactly the newest item
  const content = popped?.type === "message" && popped.role === "assistant" ? popped.content[0] : undefined;
  console.log(`popped: ${content?.type === "output_text" ? content.text : "?"}`);
  await replicaA.clearSession(); // erases the stored items; the session id stays usable
} finally {
  await replicaA.close();
  await replicaB.close();
}
