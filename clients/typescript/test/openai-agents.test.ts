// @baton/client/openai-agents against a real batond: the OpenAI Agents SDK's own Runner
// (@openai/agents-core) keeps its conversation in Baton through BatonSession, and the history
// reads back exactly as the SDK's MemorySession keeps it for the same script.
//
// The model is scripted: a local implementation of the SDK's Model interface whose answers
// follow from its input (an LLM cannot run here, and the model is not what is under test).
// Runs on Node.js 22 and newer only: @openai/agents-core depends on openai 7, which requires
// Node.js 22 (see scripts/parts/clients-typescript.sh).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { Agent, MemorySession, Runner, Usage, setTracingDisabled, tool } from "@openai/agents-core";
import type { AgentInputItem, Model, ModelRequest, ModelResponse, Session, StreamEvent } from "@openai/agents-core";
import { z } from "zod";
import { BatonClient, BatonError, textOf } from "@baton/client";
import type { CallOptions } from "@baton/client";
import { EntryKind } from "@baton/client/v1";
import { BatonSession, ITEM_MEDIA_TYPE, PYTHON_ITEM_MEDIA_TYPE, sessionKeyFor } from "@baton/client/openai-agents";
import { Batond, DropFirstAnswerProxy, rejection, sleep } from "./helpers.js";

setTracingDisabled(true);

let server: Batond;
let client: BatonClient;
let counter = 0;

before(async () => {
  server = await Batond.start();
  client = new BatonClient(server.target, { tenant: "ts-openai-agents" });
});

after(async () => {
  await client.close();
  await server.dispose();
});

function newKey(what: string): string {
  counter += 1;
  return `oa-${what}-${process.pid}-${counter}`;
}

/**
 * A scripted stand-in for an LLM. Its answer depends only on its input: a tool result is
 * summarised, a question about the weather calls `get_weather`, anything else is echoed. It
 * records every input it was given (the history the Runner read from the session).
 */
class ScriptedModel implements Model {
  readonly inputs: AgentInputItem[][] = [];

  constructor(private readonly beforeAnswer?: (call: number) => Promise<void>) {}

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    const input: AgentInputItem[] =
      typeof request.input === "string" ? [{ role: "user", content: request.input }] : structuredClone(request.input);
    this.inputs.push(input);
    await this.beforeAnswer?.(this.inputs.length);
    const n = input.length;
    const last = input[n - 1] as { type?: string; content?: unknown; output?: unknown };
    const usage = new Usage({ requests: 1, inputTokens: n, outputTokens: 1, totalTokens: n + 1 });
    if (last.type === "function_call_result") {
      const output = last.output as { text?: string };
      return { usage, output: [assistant(`msg_${n}`, `It is ${output.text ?? JSON.stringify(last.output)}.`)] };
    }
    const said = typeof last.content === "string" ? last.content : JSON.stringify(last.content);
    if (/weather/i.test(said)) {
      const call = { type: "function_call" as const, callId: `call_${n}`, name: "get_weather", arguments: '{"city":"Paris"}', status: "completed" as const };
      return { usage, output: [call] };
    }
    return { usage, output: [assistant(`msg_${n}`, `You said: ${said}`)] };
  }

  getStreamedResponse(): AsyncIterable<StreamEvent> {
    throw new Error("the scripted model does not stream");
  }
}

function assistant(id: string, text: string): ModelResponse["output"][number] {
  return { type: "message", role: "assistant", id, status: "completed", content: [{ type: "output_text", text }] };
}

const getWeather = tool({
  name: "get_weather",
  description: "The weather in a city.",
  parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny in ${city}`,
});

const SCRIPT = ["Hello, I am Ada.", "What is the weather in Paris?", "Thanks. What is my name?"];

/** Runs the turns with the SDK's Runner on `session`; returns the final outputs and what the model saw. */
async function converse(session: Session, turns: string[], beforeAnswer?: (call: number) => Promise<void>) {
  const model = new ScriptedModel(beforeAnswer);
  const agent = new Agent({ name: "assistant", instructions: "Answer briefly.", model, tools: [getWeather] });
  const runner = new Runner();
  const outputs: unknown[] = [];
  for (const turn of turns) outputs.push((await runner.run(agent, turn, { session })).finalOutput);
  return { outputs, inputs: model.inputs };
}

/** The same script on the SDK's MemorySession: what a correct store holds. */
async function reference(turns: string[]) {
  const memory = new MemorySession();
  const run = await converse(memory, turns);
  return { memory, ...run, items: await memory.getItems() };
}

function userMessage(text: string): AgentInputItem {
  return { type: "message", role: "user", content: text };
}

function textsOf(items: AgentInputItem[]): string[] {
  return items.map((i) => String((i as { content?: unknown }).content));
}

/** A client whose calls of one method run `hook` around the real call (to stage races and losses). */
class HookedClient extends BatonClient {
  onRedact?: (real: () => Promise<Awaited<ReturnType<BatonClient["redactEntries"]>>>) => ReturnType<BatonClient["redactEntries"]>;
  onAppend?: (real: () => ReturnType<BatonClient["appendEntries"]>) => ReturnType<BatonClient["appendEntries"]>;

  override redactEntries(request: Parameters<BatonClient["redactEntries"]>[0], options?: CallOptions) {
    const real = () => super.redactEntries(request, options);
    return this.onRedact ? this.onRedact(real) : real();
  }

  override appendEntries(request: Parameters<BatonClient["appendEntries"]>[0], options?: CallOptions) {
    const real = () => super.appendEntries(request, options);
    return this.onAppend ? this.onAppend(real) : real();
  }
}

describe("BatonSession with the Agents SDK's Runner", () => {
  test("a multi-turn run with a tool call reads back exactly as MemorySession holds it", async () => {
    const ref = await reference(SCRIPT);
    const sessionKey = newKey("runner");
    const session = new BatonSession(sessionKey, { client, agent: "assistant" });
    assert.equal(await session.getSessionId(), sessionKey);
    assert.deepEqual(await session.getItems(), [], "a session that does not exist yet is empty");

    const got = await converse(session, SCRIPT);
    assert.deepEqual(got.outputs, ["You said: Hello, I am Ada.", "It is sunny in Paris.", "You said: Thanks. What is my name?"]);
    assert.deepEqual(got.outputs, ref.outputs);
    assert.deepEqual(got.inputs, ref.inputs, "every model call saw the same history, read back from batond");
    const items = await session.getItems();
    assert.equal(items.length, 8);
    assert.deepEqual(items, ref.items);
    for (const limit of [0, 1, 3, 8, 100]) {
      assert.deepEqual(await session.getItems(limit), await ref.memory.getItems(limit), `getItems(${limit})`);
    }

    // One entry per item: kind and role by item type, the item's JSON as the text.
    const entries = (await client.listEntries({ sessionKey })).entries;
    assert.deepEqual(
      entries.map((e) => `${EntryKind[e.kind]}/${e.role}`),
      ["MESSAGE/user", "MESSAGE/assistant", "MESSAGE/user", "TOOL_CALL/assistant", "TOOL_RESULT/tool", "MESSAGE/assistant", "MESSAGE/user", "MESSAGE/assistant"],
    );
    assert.ok(entries.every((e) => e.author === "assistant" && e.mediaType === ITEM_MEDIA_TYPE));
    assert.deepEqual(entries.map((e) => JSON.parse(textOf(e)!)), items);
    assert.equal((await client.getSession({ sessionKey })).owner, "assistant", "created on the first addItems, owned by the agent");

    // popItem removes what MemorySession's removes, and the run goes on from there.
    assert.deepEqual(await session.popItem(), await ref.memory.popItem());
    assert.deepEqual(await session.popItem(), await ref.memory.popItem());
    assert.deepEqual(await session.getItems(), await ref.memory.getItems());
    const more = await converse(session, ["One more question: weather?"]);
    const moreRef = await converse(ref.memory, ["One more question: weather?"]);
    assert.deepEqual(more.inputs, moreRef.inputs);
    assert.deepEqual(await session.getItems(), await ref.memory.getItems());
  });

  test("two replicas on one session id (two clients) see each other's turns", async () => {
    const ref = await reference(SCRIPT);
    const sessionKey = newKey("replicas");
    const clientB = new BatonClient(server.target, { tenant: "ts-openai-agents" });
    const a = new BatonSession(sessionKey, { client, agent: "assistant" });
    const b = new BatonSession(sessionKey, { client: clientB, agent: "assistant" });
    try {
      const turn1 = await converse(a, [SCRIPT[0]!]);
      const turn2 = await converse(b, [SCRIPT[1]!]);
      const turn3 = await converse(a, [SCRIPT[2]!]);
      assert.deepEqual(textsOf(turn2.inputs[0]!.filter((i) => (i as { role?: string }).role === "user")), [SCRIPT[0], SCRIPT[1]], "B saw A's turn");
      assert.deepEqual([...turn1.inputs, ...turn2.inputs, ...turn3.inputs], ref.inputs, "the model saw one conversation");
      assert.deepEqual(await a.getItems(), ref.items);
      assert.deepEqual(await b.getItems(), ref.items);
    } finally {
      await clientB.close();
    }
  });

  test("batond restarts in the middle of a run (graceful, then a crash during an append): the run goes on, nothing is stored twice", async () => {
    const turns = [...SCRIPT, "And the weather tomorrow?"];
    const ref = await reference(turns);
    const own = await Batond.start();
    // A longer deadline than the default 10 s: the client retries across the restart, and batond
    // may start slowly on a busy machine.
    const ownClient = new HookedClient(own.target, { tenant: "ts-openai-agents", timeoutMs: 60_000 });
    const restarts: Array<Promise<void>> = [];
    const restartSoon = () => restarts.push(sleep(300).then(() => own.restart()));
    try {
      const session = new BatonSession(newKey("restart"), { client: ownClient, agent: "assistant" });
      const got = await converse(session, turns, async (call) => {
        // The 3rd model call (the weather turn's answer, after its tool call) stops batond
        // gracefully: the Runner stores the turn while it is down.
        if (call === 3) {
          await own.stop("SIGTERM");
          restartSoon();
        }
        // After the 6th, batond is killed while the turn's AppendEntries is in flight: stored or
        // not, the client's retries after the restart carry the same idempotency key.
        if (call === 6) {
          ownClient.onAppend = (real) => {
            ownClient.onAppend = undefined;
            const pending = real();
            void own.stop("SIGKILL").then(restartSoon);
            return pending;
          };
        }
      });
      assert.equal(restarts.length, 2, "batond went down twice during the run");
      await Promise.all(restarts);
      assert.deepEqual(got.outputs, ref.outputs);
      assert.deepEqual(got.inputs, ref.inputs);
      assert.deepEqual(await session.getItems(), ref.items, "every item once, in order");
      assert.equal((await ownClient.getSession({ sessionKey: await session.getSessionId() })).lastSeq, BigInt(ref.items.length));
    } finally {
      await Promise.allSettled(restarts);
      await ownClient.close();
      await own.dispose();
    }
  });
});

describe("BatonSession semantics", () => {
  test("16 concurrent addItems on one session: nothing lost, each call contiguous, each writer in order", async () => {
    const sessionKey = newKey("concurrent");
    const clientB = new BatonClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const writers = Array.from({ length: 16 }, (_, w) => new BatonSession(sessionKey, { client: w % 2 ? clientB : client }));
      const rounds = 5;
      await Promise.all(
        writers.map(async (session, w) => {
          for (let r = 0; r < rounds; r++) {
            await session.addItems([userMessage(`w${w} r${r} a`), userMessage(`w${w} r${r} b`), userMessage(`w${w} r${r} c`)]);
          }
        }),
      );
      const texts = textsOf(await writers[0]!.getItems());
      assert.equal(texts.length, 16 * rounds * 3);
      assert.equal(new Set(texts).size, texts.length, "no item twice");
      for (let i = 0; i < texts.length; i += 3) {
        const prefix = texts[i]!.slice(0, -2);
        assert.deepEqual(texts.slice(i, i + 3), [`${prefix} a`, `${prefix} b`, `${prefix} c`], "one addItems is one contiguous batch");
      }
      for (let w = 0; w < 16; w++) {
        const mine = texts.filter((t) => t.startsWith(`w${w} `));
        const expected = Array.from({ length: rounds }, (_, r) => [`w${w} r${r} a`, `w${w} r${r} b`, `w${w} r${r} c`]).flat();
        assert.deepEqual(mine, expected, `writer ${w} in order`);
      }
      const last = await client.getSession({ sessionKey });
      assert.equal(last.lastSeq, BigInt(texts.length), "gap-free: one entry per item");
    } finally {
      await clientB.close();
    }
  });

  test("concurrent pops and adds: every item is kept or popped exactly once, each writer in order", async () => {
    const sessionKey = newKey("pop-add");
    const clientB = new BatonClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const on = (i: number) => new BatonSession(sessionKey, { client: i % 2 ? clientB : client });
      await on(0).addItems([userMessage("base 0"), userMessage("base 1"), userMessage("base 2")]);
      const adders = [0, 1, 2, 3].map(on);
      const poppers = [4, 5, 6, 7].map(on);
      const [, pops] = await Promise.all([
        Promise.all(adders.map(async (s, a) => {
          for (let i = 0; i < 10; i++) await s.addItems([userMessage(`a${a} ${i}`)]);
        })),
        Promise.all(poppers.map(async (s) => {
          const got: AgentInputItem[] = [];
          for (let i = 0; i < 8; i++) {
            const item = await s.popItem();
            if (item !== undefined) got.push(item);
          }
          return got;
        })),
      ]);
      const popped = textsOf(pops.flat());
      const kept = textsOf(await on(0).getItems());
      const added = ["base 0", "base 1", "base 2", ...[0, 1, 2, 3].flatMap((a) => Array.from({ length: 10 }, (_, i) => `a${a} ${i}`))];
      assert.equal(new Set(popped).size, popped.length, "no item popped twice");
      assert.deepEqual([...popped, ...kept].sort(), [...added].sort(), "every item kept or popped, once");
      for (const a of [0, 1, 2, 3]) {
        const mine = kept.filter((t) => t.startsWith(`a${a} `));
        assert.deepEqual(mine, [...mine].sort((x, y) => Number(x.split(" ")[1]) - Number(y.split(" ")[1])), `writer ${a} in order`);
      }
      const redacted = (await client.listEntries({ sessionKey, pageSize: 1000 })).entries.filter((e) => e.redacted);
      assert.equal(redacted.length, popped.length, "one retraction per pop");
    } finally {
      await clientB.close();
    }
  });

  test("popItem racing addItems: an item appended between the pop's read and its redaction is the one popped", async () => {
    const sessionKey = newKey("pop-staged");
    const hooked = new HookedClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const popper = new BatonSession(sessionKey, { client: hooked });
      const other = new BatonSession(sessionKey, { client });
      await other.addItems([userMessage("one"), userMessage("two")]);
      let raced = 0;
      hooked.onRedact = async (real) => {
        if (raced++ === 0) await other.addItems([userMessage("three")]); // lands after the pop's read
        return real();
      };
      const popped = await popper.popItem();
      assert.equal(raced, 2, "the first redaction was refused (stale last seq) and the pop looked again");
      assert.deepEqual(textsOf([popped!]), ["three"], "the newest item at the time of the pop");
      assert.deepEqual(textsOf(await other.getItems()), ["one", "two"]);
    } finally {
      await hooked.close();
    }
  });

  test("two pops racing for the same item take two different items", async () => {
    const sessionKey = newKey("pop-pop");
    const hooked = new HookedClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const slow = new BatonSession(sessionKey, { client: hooked });
      const fast = new BatonSession(sessionKey, { client });
      await fast.addItems(["a", "b", "c", "d"].map(userMessage));
      let fastPopped: AgentInputItem | undefined;
      let staged = false;
      hooked.onRedact = async (real) => {
        if (!staged) {
          staged = true;
          fastPopped = await fast.popItem(); // takes "d" after the slow pop chose it
        }
        return real();
      };
      const slowPopped = await slow.popItem();
      assert.deepEqual(textsOf([fastPopped!, slowPopped!]), ["d", "c"]);
      assert.deepEqual(textsOf(await fast.getItems()), ["a", "b"]);
      // Eight more concurrent pops on eight items take each item exactly once.
      await fast.addItems(["1", "2", "3", "4", "5", "6", "7", "8"].map(userMessage));
      const popped = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? slow : fast).popItem()));
      assert.deepEqual(textsOf(popped.map((p) => p!)).sort(), ["1", "2", "3", "4", "5", "6", "7", "8"]);
      assert.deepEqual(textsOf(await fast.getItems()), ["a", "b"]);
    } finally {
      await hooked.close();
    }
  });

  test("a popItem whose answer is lost still removes exactly one item", async () => {
    const sessionKey = newKey("pop-lost");
    const hooked = new HookedClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const session = new BatonSession(sessionKey, { client: hooked });
      await session.addItems(["x", "y", "z"].map(userMessage));
      hooked.onRedact = async (real) => {
        await real();
        throw new BatonError("UNAVAILABLE", "the connection was lost before the answer");
      };
      assert.deepEqual(textsOf([(await session.popItem())!]), ["z"]);
      assert.deepEqual(textsOf(await session.getItems()), ["x", "y"]);
    } finally {
      await hooked.close();
    }
  });

  test("addItems is stored once: after a lost answer, and when the caller retries a failed call", async () => {
    // The client's own retry, through a proxy that drops the first answer.
    const sessionKey = newKey("add-lost");
    await client.createSession({ sessionKey, agent: "agent" });
    const proxy = await DropFirstAnswerProxy.start(server.port);
    const viaProxy = new BatonClient(proxy.target, { tenant: "ts-openai-agents" });
    try {
      await new BatonSession(sessionKey, { client: viaProxy }).addItems([userMessage("once"), userMessage("twice?")]);
      assert.equal(proxy.dropped, 1);
      assert.deepEqual(textsOf(await new BatonSession(sessionKey, { client }).getItems()), ["once", "twice?"]);
    } finally {
      await viaProxy.close();
      await proxy.close();
    }

    // The caller's retry: the append was stored but the call failed; the same items again reuse
    // its idempotency key.
    const hooked = new HookedClient(server.target, { tenant: "ts-openai-agents" });
    try {
      const session = new BatonSession(newKey("add-retry"), { client: hooked });
      await session.addItems([userMessage("first")]);
      hooked.onAppend = async (real) => {
        await real();
        throw new BatonError("UNAVAILABLE", "gave up after the last retry");
      };
      const err = await rejection(session.addItems([userMessage("turn"), userMessage("answer")]));
      assert.ok(err instanceof BatonError && err.code === "UNAVAILABLE");
      hooked.onAppend = undefined;
      await session.addItems([userMessage("turn"), userMessage("answer")]);
      assert.deepEqual(textsOf(await session.getItems()), ["first", "turn", "answer"]);
      await session.addItems([userMessage("turn"), userMessage("answer")]); // a new call: stored again
      assert.deepEqual(textsOf(await session.getItems()), ["first", "turn", "answer", "turn", "answer"]);
    } finally {
      await hooked.close();
    }
  });

  test("getItems skips redacted entries and entries that are not items; binary data comes back as bytes", async () => {
    const sessionKey = newKey("skip");
    const session = new BatonSession(sessionKey, { client, agent: "analyst" });
    const bytes = new Uint8Array([0, 1, 2, 127, 128, 253, 254, 255]);
    const screenshot: AgentInputItem = {
      type: "function_call_result",
      name: "screenshot",
      callId: "call_9",
      status: "completed",
      output: { type: "image", image: { data: bytes, mediaType: "image/png" } },
    };
    await session.addItems([userMessage("m1"), screenshot, userMessage("m2")]);
    // Another Baton client writes plain text to the same session: not an item, skipped.
    await client.appendEntries({ sessionKey, entries: [{ kind: EntryKind.MESSAGE, author: "analyst", text: "a note" }] });
    await session.addItems(["m3", "m4", "m5"].map(userMessage));
    assert.deepEqual(textsOf([(await session.popItem())!]), ["m5"]);
    assert.deepEqual(textsOf([(await session.popItem())!]), ["m4"]);

    const items = await session.getItems();
    assert.equal(items.length, 4);
    assert.deepEqual(items[1], screenshot);
    const image = (items[1] as { output: { image: { data: unknown } } }).output.image.data;
    assert.ok(image instanceof Uint8Array, "bytes come back as a Uint8Array");
    assert.deepEqual(textsOf([items[0]!, items[2]!, items[3]!]), ["m1", "m2", "m3"]);
    assert.deepEqual(textsOf(await session.getItems(2)).at(-1), "m3");
    assert.deepEqual(await session.getItems(2), items.slice(-2));
    assert.deepEqual(await session.getItems(3), items.slice(-3));

    // Many pops leave many redacted entries: the newest items are still found behind them.
    await session.addItems(Array.from({ length: 40 }, (_, i) => userMessage(`bulk ${i}`)));
    for (let i = 0; i < 40; i++) await session.popItem();
    assert.deepEqual(await session.getItems(2), items.slice(-2));
    assert.deepEqual(await session.getItems(), items);
    const redacted = (await client.listEntries({ sessionKey, pageSize: 1000 })).entries.filter((e) => e.redacted);
    assert.equal(redacted.length, 42);
    assert.ok(redacted.every((e) => textOf(e) === "" && e.redaction?.redactedBy === "analyst"));
  });

  test("clearSession erases the stored items; the session goes on", async () => {
    const sessionKey = newKey("clear");
    const session = new BatonSession(sessionKey, { client });
    await session.clearSession(); // nothing to clear yet
    await session.addItems(["a", "b", "c"].map(userMessage));
    await session.popItem();
    await session.clearSession();
    assert.deepEqual(await session.getItems(), []);
    assert.equal(await session.popItem(), undefined);
    const s = await client.getSession({ sessionKey });
    assert.equal(s.firstSeq, 4n, "the entries up to the last seq were compacted away");
    await session.addItems([userMessage("d")]);
    assert.deepEqual(textsOf(await session.getItems()), ["d"]);
    assert.deepEqual(textsOf(await new BatonSession(sessionKey, { client }).getItems(5)), ["d"]);
    assert.deepEqual((await client.listEntries({ sessionKey, afterSeq: 3n })).entries.map((e) => e.seq), [4n]);
  });

  test("session ids map to Baton keys as in the Python adapter", async () => {
    assert.equal(sessionKeyFor("user-42@support.v1:a_b"), "user-42@support.v1:a_b");
    // The expected keys are Python's: "oai-sha256-" + hashlib.sha256(id.encode("utf-8")).hexdigest()
    assert.equal(sessionKeyFor("user 42/é"), "oai-sha256-f64b46720d02e37784ee18573187f140ef9c5decbae1fe915199d8e65d62bc82");
    assert.equal(sessionKeyFor("x".repeat(129)), "oai-sha256-0ec9eb33e74510bcdd1f2ea55206e82f21649c5c2becbf2b433eb475b34c01bd");
    const id = `chat with spaces ${newKey("id")}`;
    const session = new BatonSession(id, { client });
    assert.equal(await session.getSessionId(), id);
    await session.addItems([userMessage("hi")]);
    assert.equal((await client.getSession({ sessionKey: sessionKeyFor(id) })).lastSeq, 1n);
    assert.throws(() => new BatonSession("x", { client, target: server.target }), TypeError);
  });

  test("a conversation the Python adapter stored (Responses API items) reads as agents-core items, and the Runner continues it", async () => {
    const sessionKey = newKey("python");
    // What baton.integrations.openai_agents writes for the first two turns of SCRIPT.
    const stored = [
      { content: "Hello, I am Ada.", role: "user" },
      { id: "msg_1", content: [{ annotations: [], text: "You said: Hello, I am Ada.", type: "output_text", logprobs: [] }], role: "assistant", status: "completed", type: "message" },
      { id: "rs_1", summary: [], type: "reasoning" },
      { content: "What is the weather in Paris?", role: "user" },
      { arguments: '{"city":"Paris"}', call_id: "call_3", name: "get_weather", type: "function_call", id: "fc_3", status: "completed" },
      { call_id: "call_3", output: "sunny in Paris", type: "function_call_output" },
      { id: "msg_5", content: [{ annotations: [], text: "It is sunny in Paris.", type: "output_text", logprobs: [] }], role: "assistant", status: "completed", type: "message" },
    ];
    await client.createSession({ sessionKey, agent: "assistant" });
    await client.appendEntries({
      sessionKey,
      entries: stored.map((item) => ({ kind: EntryKind.MESSAGE, author: "assistant", text: JSON.stringify(item), mediaType: PYTHON_ITEM_MEDIA_TYPE })),
    });
    const session = new BatonSession(sessionKey, { client, agent: "assistant" });
    const converted: AgentInputItem[] = [
      { type: "message", role: "user", content: "Hello, I am Ada." },
      { type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "You said: Hello, I am Ada." }], id: "msg_1" },
      { type: "unknown", providerData: stored[2] },
      { type: "message", role: "user", content: "What is the weather in Paris?" },
      { type: "function_call", callId: "call_3", name: "get_weather", arguments: '{"city":"Paris"}', status: "completed", id: "fc_3" },
      { type: "function_call_result", callId: "call_3", name: "get_weather", status: "completed", output: { type: "text", text: "sunny in Paris" } },
      { type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "It is sunny in Paris." }], id: "msg_5" },
    ];
    assert.deepEqual(await session.getItems(), converted);
    const next = await converse(session, [SCRIPT[2]!]);
    assert.deepEqual(next.outputs, ["You said: Thanks. What is my name?"]);
    assert.deepEqual(next.inputs[0]!.slice(0, 2), converted.slice(0, 2), "the model was given the Python turns");
    const items = await session.getItems();
    assert.equal(items.length, 9);
    const entries = (await client.listEntries({ sessionKey })).entries;
    assert.deepEqual(entries.map((e) => e.mediaType), [...stored.map(() => PYTHON_ITEM_MEDIA_TYPE), ITEM_MEDIA_TYPE, ITEM_MEDIA_TYPE]);
  });

  test("a session that does not exist yet reads as empty; popItem returns undefined", async () => {
    const session = new BatonSession(newKey("empty"), { client });
    assert.deepEqual(await session.getItems(), []);
    assert.deepEqual(await session.getItems(3), []);
    assert.equal(await session.popItem(), undefined);
    await session.addItems([]);
    assert.deepEqual(await session.getItems(), []);
  });

  test("a session made from a target owns its client and closes it", async () => {
    const session = new BatonSession(newKey("own"), { target: server.target, tenant: "ts-openai-agents", agent: "solo" });
    await session.addItems([userMessage("hello")]);
    assert.deepEqual(textsOf(await session.getItems()), ["hello"]);
    await session.close();
    const err = await rejection(session.getItems());
    assert.ok(err instanceof BatonError && err.code === "CANCELLED", String(err));
  });
});

test("examples/openai-agents.ts runs against batond", async () => {
  const script = fileURLToPath(new URL("../examples/openai-agents.js", import.meta.url));
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      [script],
      { env: { ...process.env, BATON_TARGET: server.target }, timeout: 60_000 },
      (_err, out, errOut) => resolve({ code: child.exitCode, stdout: out, stderr: errOut }),
    );
  });
  assert.equal(code, 0, `the example failed:\n${stdout}\n${stderr}`);
  assert.match(stdout, /replica A: You said: My name is Ada\./);
  assert.match(stdout, /replica B: Your name is Ada\./);
  assert.match(stdout, /history: 4 items/);
  assert.match(stdout, /popped: Your name is Ada\./);
});
