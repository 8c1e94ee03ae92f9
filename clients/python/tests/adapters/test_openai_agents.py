"""baton.integrations.openai_agents.BatonSession against a real batond, driven by the SDK's real
``agents.Runner``.

The model is scripted (``ScriptedModel``: a custom ``agents.models.interface.Model`` returning
canned responses in order) because no LLM can run here; the system under test is the session
store, not the model. Each conversation is run twice, once on Baton and once on the SDK's own
SQLiteSession, and the histories (and what the model was given each turn) must be equal.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional

import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, Usage, function_tool
from agents.items import ModelResponse
from agents.memory import Session, SessionSettings
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)

import baton
from baton.integrations.openai_agents import ITEM_MEDIA_TYPE, BatonSession, session_key_for
from conftest import Batond, DropProxy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_session.py"


def sid(prefix: str = "oai") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- the scripted model and the conversation -------------------------------------------------


def say(n: int, text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{n}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def call(n: int, city: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        id=f"fc_{n}",
        call_id=f"call_{n}",
        name="get_weather",
        arguments=json.dumps({"city": city}),
        type="function_call",
    )


# One entry per model call, in order: turn 1 and 2 call the tool then answer; turn 3 reasons and
# answers.
SCRIPT: List[List[Any]] = [
    [call(1, "Paris")],
    [say(1, "It is sunny in Paris.")],
    [call(2, "Rome")],
    [say(2, "It rains in Rome.")],
    [ResponseReasoningItem(id="rs_3", type="reasoning", summary=[]), say(3, "You're welcome! Ciao.")],
]
TURNS = ["What's the weather in Paris?", "And in Rome?", "Thanks!"]


class ScriptedModel(Model):
    """A deterministic stand-in for an LLM (none can run here): returns SCRIPT's responses in
    order, records the input of every call, and runs ``hooks[i]`` before answering call i."""

    def __init__(self, hooks: Optional[Dict[int, Callable[[], Awaitable[None]]]] = None) -> None:
        self.calls = 0
        self.inputs: List[Any] = []
        self.hooks = hooks or {}

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        n = self.calls
        self.calls += 1
        self.inputs.append(copy.deepcopy(input))
        if n in self.hooks:
            await self.hooks[n]()
        return ModelResponse(output=list(SCRIPT[n]), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return {"Paris": "sunny, 24 C", "Rome": "rain, 17 C"}[city]


async def converse(session: Session, model: ScriptedModel, turns: List[str] = TURNS) -> List[Any]:
    agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[get_weather])
    outputs = []
    for text in turns:
        result = await Runner.run(agent, text, session=session, run_config=RunConfig(tracing_disabled=True))
        outputs.append(result.final_output)
    return outputs


async def reference() -> tuple[List[Any], List[Any], List[Any]]:
    """The same conversation on the SDK's own SQLiteSession: (items, model inputs, outputs)."""
    sqlite = SQLiteSession(sid("ref"))
    model = ScriptedModel()
    outputs = await converse(sqlite, model)
    items = await sqlite.get_items()
    sqlite.close()
    return items, model.inputs, outputs


async def entries(client: baton.AsyncClient, key: str) -> List[Any]:
    return list((await client.list_entries(session_key=key, page_size=1000)).entries)


# --- the Runner on Baton equals the Runner on SQLite ------------------------------------------


async def test_runner_history_equals_sqlite_session(server: Batond) -> None:
    want_items, want_inputs, want_outputs = await reference()
    assert len(want_items) == 3 + 2 * 2 + 1 + 2 + 1  # sanity of the script: inputs, calls, outputs

    async with BatonSession(sid(), target=server.target, agent="assistant") as session:
        assert isinstance(session, Session)
        model = ScriptedModel()
        outputs = await converse(session, model)

        assert outputs == want_outputs
        assert model.inputs == want_inputs  # the history Baton fed back to the model, turn by turn
        assert await session.get_items() == want_items

        # One entry per item: the item's JSON as text; kinds and roles follow the items.
        stored = await entries(session.client, session.session_key)
        assert [json.loads(e.text) for e in stored] == want_items
        assert {e.media_type for e in stored} == {ITEM_MEDIA_TYPE}
        assert {e.author for e in stored} == {"assistant"}
        kinds = [(baton.v1.EntryKind.Name(e.kind), e.role) for e in stored]
        assert kinds[:4] == [
            ("ENTRY_KIND_MESSAGE", "user"),
            ("ENTRY_KIND_TOOL_CALL", "assistant"),
            ("ENTRY_KIND_TOOL_RESULT", "tool"),
            ("ENTRY_KIND_MESSAGE", "assistant"),
        ]
        assert ("ENTRY_KIND_MESSAGE", "assistant") in kinds[-2:]  # the reasoning item and the answer


async def test_get_items_limits_match_sqlite(server: Batond) -> None:
    items: List[Any] = [{"role": "user", "content": f"m{i}"} for i in range(7)]
    sqlite = SQLiteSession(sid("ref"))
    await sqlite.add_items(items)
    async with BatonSession(sid(), target=server.target) as session:
        assert await session.get_items() == []
        await session.add_items(items)
        for limit in (None, 0, 1, 3, 7, 100, -1):
            assert await session.get_items(limit) == await sqlite.get_items(limit), limit

    # session_settings.limit is the default, as in the SDK's sessions.
    async with BatonSession(session.session_id, target=server.target, session_settings={"limit": 2}) as limited:
        assert isinstance(limited.session_settings, SessionSettings)
        assert await limited.get_items() == items[-2:]
        assert await limited.get_items(5) == items[-5:]
    sqlite.close()


async def test_items_round_trip_exactly(server: Batond) -> None:
    odd: List[Any] = [
        {"role": "user", "content": "Grüße, 你好, emoji 🎉, NUL \u0000, lone surrogate \ud800"},
        {"type": "function_call_output", "call_id": "c1", "output": json.dumps({"n": 1, "x": 1.0})},
        {"type": "custom", "n": 1, "x": 1.0, "big": 2**70, "f": 0.1, "none": None, "nested": {"a": [True, False]}},
        {"role": "developer", "content": "internal"},
    ]
    async with BatonSession(sid(), target=server.target) as session:
        await session.add_items(odd)
        back = await session.get_items()
        assert back == odd
        assert [type(v) for v in back[2].values()] == [type(v) for v in odd[2].values()]  # 1 stays int, 1.0 float
        kinds = [baton.v1.EntryKind.Name(e.kind) for e in await entries(session.client, session.session_key)]
        assert kinds == ["ENTRY_KIND_MESSAGE", "ENTRY_KIND_TOOL_RESULT", "ENTRY_KIND_MESSAGE", "ENTRY_KIND_SYSTEM"]

        many: List[Any] = [{"role": "user", "content": str(i)} for i in range(1001)]  # above one batch
        await session.add_items(many)
        assert await session.get_items() == odd + many


async def test_session_key_mapping_and_foreign_entries(server: Batond) -> None:
    assert session_key_for("user-42:chat@web_1.x") == "user-42:chat@web_1.x"
    odd_id = "user 42/chat #1 ✓"
    key = session_key_for(odd_id)
    assert key.startswith("oai-sha256-") and len(key) == 75 and key == session_key_for(odd_id)

    async with BatonSession(odd_id, target=server.target, agent="bot") as session:
        assert session.session_key == key
        assert await session.pop_item() is None  # no session yet: nothing to pop, nothing created
        await session.add_items([{"role": "user", "content": "hi"}])
        s = await session.client.get_session(session_key=key)
        assert (s.owner, s.last_seq) == ("bot", 1)

        # Entries other Baton clients write are not items: skipped, and never popped.
        await session.client.append_entries(
            session_key=key, entries=[{"kind": "message", "role": "user", "author": "human", "text": "not an item"}]
        )
        assert await session.get_items() == [{"role": "user", "content": "hi"}]
        assert await session.pop_item() == {"role": "user", "content": "hi"}
        assert await session.pop_item() is None
        assert [e.text for e in await entries(session.client, key) if not e.redacted] == ["not an item"]


# --- pop_item and clear_session --------------------------------------------------------------


class HookedClient(baton.AsyncClient):
    """The real client, with a hook run once just before its next RedactEntries call: it lets a
    test put another writer's call between pop_item's read and its redaction."""

    before_redact: Optional[Callable[[], Awaitable[None]]] = None
    redactions = 0

    async def redact_entries(self, *args: Any, **kwargs: Any) -> Any:
        self.redactions += 1
        hook, self.before_redact = self.before_redact, None
        if hook is not None:
            await hook()
        return await super().redact_entries(*args, **kwargs)


def msg(text: str) -> Any:
    return {"role": "user", "content": text}


async def test_pop_item_retracts_the_last_item(server: Batond) -> None:
    async with BatonSession(sid(), target=server.target) as session:
        await session.add_items([msg("a"), msg("b"), msg("c")])
        assert await session.pop_item() == msg("c")
        assert await session.pop_item() == msg("b")
        await session.add_items([msg("d")])
        assert await session.get_items() == [msg("a"), msg("d")]
        assert await session.get_items(1) == [msg("d")]
        # Retracted entries keep their seq, lose their content and are never read back.
        stored = await entries(session.client, session.session_key)
        assert [(e.seq, e.redacted, e.text) for e in stored][1:3] == [(2, True, ""), (3, True, "")]
        assert stored[1].redaction.reason.startswith("openai-agents pop_item ")


async def test_pop_item_racing_add_items_removes_the_item_that_is_last(server: Batond) -> None:
    key = sid()
    async with BatonSession(key, target=server.target) as writer:
        client = HookedClient(server.target)
        popper = BatonSession(key, client)
        await writer.add_items([msg("x1"), msg("x2")])

        # pop_item read x2 as the last item; then the other replica appends y before the
        # redaction: redacting x2 now would remove the wrong item. It must retract y.
        async def add_y() -> None:
            await writer.add_items([msg("y")])

        client.before_redact = add_y
        assert await popper.pop_item() == msg("y")
        assert client.redactions == 2  # the first redaction was refused (expected_last_seq)
        assert await writer.get_items() == [msg("x1"), msg("x2")]

        # Two pops racing: the other replica pops x2 between this pop's read and its redaction.
        other_popped: List[Any] = []

        async def pop_other() -> None:
            other_popped.append(await writer.pop_item())

        client.before_redact = pop_other
        assert await popper.pop_item() == msg("x1")
        assert other_popped == [msg("x2")]
        assert await writer.get_items() == []

        # A clear between the read and the redaction: nothing is left to pop.
        await writer.add_items([msg("z")])

        async def clear() -> None:
            await writer.clear_session()

        client.before_redact = clear
        assert await popper.pop_item() is None
        await client.close()


async def test_pop_item_racing_add_items_under_load(server: Batond) -> None:
    key = sid()
    writers = [BatonSession(key, target=server.target) for _ in range(3)]
    poppers = [BatonSession(key, target=server.target) for _ in range(2)]
    await writers[0].add_items([msg("seed-0"), msg("seed-1")])
    popped: List[Any] = []

    async def write(w: int) -> None:
        for i in range(25):
            await writers[w].add_items([msg(f"w{w}-{i}")])
            await asyncio.sleep(random.uniform(0, 0.003))

    async def pop(p: int) -> None:
        for _ in range(15):
            item = await poppers[p].pop_item()
            if item is not None:
                popped.append(item)
            await asyncio.sleep(random.uniform(0, 0.003))

    await asyncio.gather(*(write(w) for w in range(3)), *(pop(p) for p in range(2)))
    final = await writers[0].get_items()
    added = [msg("seed-0"), msg("seed-1")] + [msg(f"w{w}-{i}") for w in range(3) for i in range(25)]
    texts = [i["content"] for i in final]
    popped_texts = [i["content"] for i in popped]
    assert len(popped) > 0
    assert len(set(popped_texts)) == len(popped_texts)  # nothing popped twice
    assert sorted(texts + popped_texts) == sorted(i["content"] for i in added)  # nothing lost
    for w in range(3):  # each writer's order kept
        mine = [t for t in texts if t.startswith(f"w{w}-")]
        assert mine == sorted(mine, key=lambda t: int(t.split("-")[1]))
    for s in writers + poppers:
        await s.close()


async def test_clear_session_compacts_and_keeps_the_session(server: Batond) -> None:
    async with BatonSession(sid(), target=server.target) as session:
        await session.clear_session()  # no session yet: nothing to do
        await session.add_items([msg("a"), msg("b")])
        await session.pop_item()
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.get_items(3) == []
        assert await session.pop_item() is None
        await session.add_items([msg("c")])
        assert await session.get_items() == [msg("c")]
        s = await session.client.get_session(session_key=session.session_key)
        assert (s.first_seq, s.last_seq) == (3, 3)  # the same Baton session; seqs are never reused
        await session.clear_session()
        await session.clear_session()
        assert await session.get_items() == []


# --- concurrency, failures, replicas ---------------------------------------------------------


async def test_sixteen_concurrent_add_items(server: Batond) -> None:
    key = sid()  # the session does not exist yet: all 16 race to create it
    writers = [BatonSession(key, target=server.target) for _ in range(16)]

    async def write(w: int) -> None:
        for i in range(5):
            await writers[w].add_items([msg(f"w{w}-{i}-a"), msg(f"w{w}-{i}-b")])

    await asyncio.gather(*(write(w) for w in range(16)))
    texts = [i["content"] for i in await writers[0].get_items()]
    assert len(texts) == 16 * 5 * 2 and len(set(texts)) == len(texts)  # nothing lost, nothing twice
    for w in range(16):
        mine = [t for t in texts if t.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}-{x}" for i in range(5) for x in "ab"]  # each writer's order
    for n in range(0, len(texts), 2):  # each add_items is one atomic batch: a and b adjacent
        assert texts[n].endswith("-a") and texts[n + 1] == texts[n][:-1] + "b"
    s = await writers[0].client.get_session(session_key=key)
    assert s.last_seq == 160
    for session in writers:
        await session.close()


async def test_lost_answer_is_stored_once(server: Batond) -> None:
    """A proxy drops the connection after batond stored the batch, before the answer arrives."""
    key = sid()
    check = baton.Client(server.target)
    proxy = DropProxy(server.port)
    try:

        def stored(n: int) -> Callable[[], bool]:
            return lambda: check.get_session(session_key=key).last_seq >= n

        # The client retries on a new connection with the same idempotency key: stored once.
        async with BatonSession(key, target=proxy.target) as session:
            await session.add_items([msg("first")])
            proxy.arm(stored(2))
            await session.add_items([msg("second")])
            assert proxy.dropped == 1
            assert await session.get_items() == [msg("first"), msg("second")]

        # Without client retries the call fails; retrying the same batch reuses its key.
        once = baton.RetryPolicy(max_attempts=1)
        async with BatonSession(key, target=proxy.target, retry=once) as session:
            proxy.arm(stored(3))
            with pytest.raises(baton.BatonError) as err:
                await session.add_items([msg("third")])
            assert err.value.code == "UNAVAILABLE" and proxy.dropped == 2
            # The application retries (its first retry may meet the broken connection too).
            for attempt in range(10):
                try:
                    await session.add_items([msg("third")])
                    break
                except baton.BatonError as e:
                    assert e.code == "UNAVAILABLE" and attempt < 9
                    await asyncio.sleep(0.1)
            assert await session.get_items() == [msg("first"), msg("second"), msg("third")]  # once
            await session.add_items([msg("third")])  # after a success, the same batch is new
            assert [i["content"] for i in await session.get_items()] == ["first", "second", "third", "third"]
    finally:
        proxy.close()
        check.close()


async def test_batond_restart_mid_run(own_server: Batond) -> None:
    want_items, want_inputs, want_outputs = await reference()
    restarted = threading.Event()

    def start_later() -> None:
        time.sleep(0.5)
        own_server.start()
        restarted.set()

    async def restart() -> None:
        # batond goes down for good, then comes back in the background while the runner goes
        # on: its next add_items is sent to a batond that is not there yet.
        await asyncio.to_thread(own_server.stop)
        threading.Thread(target=start_later, daemon=True).start()

    # The restart happens during turn 2, right after the model asked for the tool.
    model = ScriptedModel(hooks={2: restart})
    async with BatonSession(sid(), target=own_server.target, timeout=60) as session:
        outputs = await converse(session, model)
        # The run could only end after batond came back: the restart happened within it.
        assert own_server.starts == 2
        assert restarted.wait(60)
        assert outputs == want_outputs
        assert model.inputs == want_inputs
        assert await session.get_items() == want_items  # no duplicate, nothing lost
        stored = await entries(session.client, session.session_key)
        assert len(stored) == len(want_items)


async def test_two_replicas_see_each_others_turns(server: Batond) -> None:
    want_items, want_inputs, _ = await reference()
    key = sid()
    replica_a = BatonSession(key, target=server.target, agent="support-bot")
    client_b = baton.AsyncClient(server.target)
    replica_b = BatonSession(key, client_b, agent="support-bot")
    model = ScriptedModel()  # one script, its calls spread over the replicas

    await converse(replica_a, model, TURNS[:1])
    assert await replica_b.get_items() == want_items[:4]  # B sees A's turn
    await converse(replica_b, model, TURNS[1:2])
    assert model.inputs[2] == want_inputs[2]  # B's model was given A's turn as history
    assert await replica_a.get_items() == want_items[:8]  # A sees B's turn
    await converse(replica_a, model, TURNS[2:])
    assert model.inputs == want_inputs
    assert await replica_b.get_items() == want_items

    await replica_a.close()
    await replica_b.close()
    assert (await client_b.get_session(session_key=key)).last_seq == len(want_items)  # not closed: B's own
    await client_b.close()


def test_example_runs(server: Batond) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), server.target], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "replica 2: (offline) I have seen 2 user message(s)" in out.stdout
    assert "4 items in Baton session" in out.stdout
    assert "now 3 items; the last: 'What is my name?'" in out.stdout
    assert "after clear_session: []" in out.stdout
