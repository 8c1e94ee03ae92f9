"""BatonSessionService (baton.integrations.adk) against a real batond, driven by ADK's own Runner.

The model is a scripted local BaseLlm (canned LlmResponses): an LLM cannot run here, and the model
is not what is tested. Ids and timestamps come from ADK's platform providers set to deterministic
ones, so a run on Baton and the same run on ADK's InMemorySessionService can be compared whole.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, AsyncGenerator, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from google.adk.agents import LlmAgent
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models import LlmRequest, LlmResponse
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService, InMemorySessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.tools import ToolContext
from google.genai import types

import baton
from baton.integrations.adk import BatonSessionService
from conftest import Batond

# The example's scripted model and reply helpers; the example itself runs in test_example_runs.
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adk_session_service.py"
_spec = importlib.util.spec_from_file_location("adk_session_service_example", EXAMPLE)
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)
say: Callable[[str], LlmResponse] = example.say
call: Callable[[str], LlmResponse] = example.call


class ScriptedModel(example.ScriptedModel):  # type: ignore[misc,name-defined]
    """A stand-in for an LLM (none can run here): replies from a script, in order, and records
    the text of every request so a test can see what history the agent was given."""

    seen: List[List[str]] = []

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen.append([p.text for c in llm_request.contents for p in (c.parts or []) if p.text])
        async for reply in super().generate_content_async(llm_request, stream):
            yield reply


# Three turns: two use the tool (which writes user:, app:, temp: and session state), and the
# agent's output_key writes session state on every answer.
SCRIPT = [
    ("Weather in Paris?", [call("Paris"), say("Sunny, 18 °C in Paris.")]),
    ("And in Oslo?", [call("Oslo"), say("Snow, -3 °C in Oslo.")]),
    ("Thanks!", [say("You're welcome.")]),
]
INITIAL_STATE = {"app:plan": "free", "user:lang": "fr", "temp:boot": True, "greeting": "hi", "n": 1}


def tool(on_call: Optional[Callable[[str], None]] = None) -> Callable[..., Dict[str, Any]]:
    def get_weather(city: str, tool_context: ToolContext) -> Dict[str, Any]:
        """Returns the weather in a city."""
        if on_call is not None:
            on_call(city)
        tool_context.state["user:last_city"] = city
        tool_context.state["app:lookups"] = tool_context.state.get("app:lookups", 0) + 1
        tool_context.state["temp:scratch"] = city.upper()
        tool_context.state["cities"] = [*tool_context.state.get("cities", []), city]
        return {"city": city, "temp_c": 18 if city == "Paris" else -3}

    return get_weather


def runner(
    service: BaseSessionService, app: str, replies: List[LlmResponse], **kw: Any
) -> Tuple[Runner, ScriptedModel]:
    model = ScriptedModel(model="scripted", replies=list(replies), seen=[])
    agent = LlmAgent(name="forecaster", model=model, tools=[tool(kw.get("on_call"))], output_key="last_answer")
    return Runner(agent=agent, app_name=app, session_service=service), model


async def turn(r: Runner, user: str, session_id: str, text: str) -> List[Event]:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    return [e async for e in r.run_async(user_id=user, session_id=session_id, new_message=message)]


async def converse(service: BaseSessionService, app: str, **kw: Any) -> Session:
    """Runs SCRIPT through ADK's Runner on a new session; returns the session as read back, after
    checking that it holds exactly the events the runner produced."""
    created = await service.create_session(app_name=app, user_id="alice", state=dict(INITIAL_STATE))
    replies = [r for _, rs in SCRIPT for r in rs]
    r, _ = runner(service, app, replies, **kw)
    produced: List[Event] = []
    for text, _ in SCRIPT:
        produced += await turn(r, "alice", created.id, text)
    got = await service.get_session(app_name=app, user_id="alice", session_id=created.id)
    assert got is not None
    assert dump([e for e in got.events if e.author != "user"]) == dump(produced)
    return got


@pytest.fixture()
def deterministic() -> Iterator[Callable[[], None]]:
    """ADK's id and clock providers made deterministic; calling the fixture's value restarts
    both, so two runs of the same script produce the same ids and timestamps."""

    def restart() -> None:
        ids = itertools.count(1)
        ticks = itertools.count(1)
        platform_uuid.set_id_provider(lambda: f"id-{next(ids):05d}")
        platform_time.set_time_provider(lambda: 1_700_000_000.0 + next(ticks) * 0.25)

    restart()
    yield restart
    platform_uuid.reset_id_provider()
    platform_time.reset_time_provider()


def app_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def dump(events: List[Event]) -> List[Dict[str, Any]]:
    return [e.model_dump(mode="json", exclude_none=True) for e in events]


def canonical(session: Session) -> Any:
    """The session as JSON, less what depends on scheduling. ADK's runner draws event ids and
    times from concurrent tasks, so which event gets which number changes with the order those
    tasks run in (a remote store's awaits change it); what must not change is everything else and
    the structure: which call a response answers, which events share an invocation, that time
    never goes back and that last_update_time is the newest event's. Exact ids and times are
    checked against what the runner produced in converse()."""
    events = dump(session.events)
    times = [e.pop("timestamp") for e in events]
    assert times == sorted(times)
    assert session.last_update_time == (times[-1] if times else session.last_update_time)
    for e in events:
        e["id"] = "<event>"
    text = json.dumps({"id": session.id, "events": events, "state": session.state}, sort_keys=True)
    text = renumber(renumber(text, r"adk-id-\d{5}", "call"), r"e-id-\d{5}", "invocation")
    return json.loads(text)


def renumber(text: str, pattern: str, tag: str) -> str:
    """Each match of ``pattern`` replaced by ``tag`` and its rank of first appearance."""
    ranks: Dict[str, str] = {}
    return re.sub(pattern, lambda m: ranks.setdefault(m.group(0), f"{tag}{len(ranks)}"), text)


def assert_same(baton_session: Session, reference: Session) -> None:
    assert canonical(baton_session) == canonical(reference)
    assert len({e.id for e in baton_session.events}) == len(baton_session.events)


async def test_runner_conversation_reads_back_as_in_memory(server: Batond, deterministic: Callable[[], None]) -> None:
    app = app_name()
    reference = await converse(InMemorySessionService(), app)
    deterministic()
    async with BatonSessionService(target=server.target) as service:
        got = await converse(service, app)
        assert_same(got, reference)
        # The meaningful fields, spelled out: the tool call, its result and the state deltas.
        assert [e.author for e in got.events] == ["user", "forecaster", "forecaster", "forecaster"] * 2 + [
            "user",
            "forecaster",
        ]
        assert got.events[1].get_function_calls()[0].args == {"city": "Paris"}
        assert got.events[2].get_function_responses()[0].response == {"city": "Paris", "temp_c": 18}
        assert got.events[2].actions.state_delta == {"user:last_city": "Paris", "app:lookups": 1, "cities": ["Paris"]}
        assert got.state == {
            "greeting": "hi",
            "n": 1,
            "cities": ["Paris", "Oslo"],
            "last_answer": "You're welcome.",
            "app:plan": "free",
            "app:lookups": 2,
            "user:lang": "fr",
            "user:last_city": "Oslo",
        }
        assert await service.get_user_state(app_name=app, user_id="alice") == {"lang": "fr", "last_city": "Oslo"}

        # What Baton holds: one entry per event, the event's JSON kept exactly.
        key = baton_key(service, app, "alice", got.id)
        entries = (await service.client.list_entries(session_key=key)).entries
        assert [e.seq for e in entries] == list(range(1, 11))
        assert [baton.v1.common_pb2.EntryKind.Name(e.kind) for e in entries[:4]] == [
            "ENTRY_KIND_MESSAGE",
            "ENTRY_KIND_TOOL_CALL",
            "ENTRY_KIND_TOOL_RESULT",
            "ENTRY_KIND_MESSAGE",
        ]
        assert [e.author for e in entries[:2]] == ["user", "forecaster"]
        assert [Event.model_validate_json(e.text) for e in entries] == got.events
        assert entries[1].text == got.events[1].model_dump_json(exclude_none=True)
        assert all("temp:" not in e.text for e in entries)


def baton_key(service: BatonSessionService, app: str, user: str, session_id: str) -> str:
    from baton.integrations import adk

    return adk._session_key(app, user, session_id)


async def both(
    services: List[BaseSessionService], fn: Callable[[BaseSessionService], Any], reset: Callable[[], None]
) -> List[Any]:
    """Runs ``fn`` on each service from the same deterministic start."""
    out = []
    for s in services:
        reset()
        out.append(await fn(s))
    return out


async def test_get_session_config(server: Batond, deterministic: Callable[[], None]) -> None:
    app = app_name()
    async with BatonSessionService(target=server.target) as service:
        memory = InMemorySessionService()

        async def fill(s: BaseSessionService) -> Session:
            session = await s.create_session(app_name=app, user_id="u", session_id="s1")
            for i, ts in enumerate([10.0, 20.0, 20.0, 30.0, 40.0]):
                event = Event(author="user" if i % 2 else "bot", invocation_id=f"inv-{i}", timestamp=ts)
                event.content = types.Content(role="user", parts=[types.Part(text=f"event {i}")])
                await s.append_event(session, event)
            return session

        await both([memory, service], fill, deterministic)
        configs = [
            None,
            GetSessionConfig(num_recent_events=2),
            GetSessionConfig(num_recent_events=0),
            GetSessionConfig(num_recent_events=99),
            GetSessionConfig(after_timestamp=20.0),
            GetSessionConfig(after_timestamp=20.5),
            GetSessionConfig(after_timestamp=99.0),
            GetSessionConfig(after_timestamp=20.0, num_recent_events=2),
            GetSessionConfig(after_timestamp=30.0, num_recent_events=5),
        ]
        for config in configs:
            want = await memory.get_session(app_name=app, user_id="u", session_id="s1", config=config)
            got = await service.get_session(app_name=app, user_id="u", session_id="s1", config=config)
            assert want is not None and got is not None
            assert dump(got.events) == dump(want.events), config
            assert got.last_update_time == want.last_update_time == 40.0
        recent = await service.get_session(
            app_name=app, user_id="u", session_id="s1", config=GetSessionConfig(num_recent_events=2)
        )
        assert recent is not None and [e.timestamp for e in recent.events] == [30.0, 40.0]
        assert await service.get_session(app_name=app, user_id="u", session_id="nope") is None
        assert await service.get_session(app_name=app, user_id="other", session_id="s1") is None


async def test_state_scopes_across_sessions(server: Batond, deterministic: Callable[[], None]) -> None:
    app = app_name()
    async with BatonSessionService(target=server.target) as service:
        memory = InMemorySessionService()

        async def scenario(s: BaseSessionService) -> Dict[str, Any]:
            a = await s.create_session(
                app_name=app, user_id="alice", session_id="a", state={"app:v": 1, "user:u": "x", "temp:t": 0, "own": 1}
            )
            await s.create_session(app_name=app, user_id="alice", session_id="b", state={"own": 2})
            c = await s.create_session(app_name=app, user_id="bob", session_id="c")
            delta = {"app:v": 2, "app:w": [1, 2], "user:u": "y", "temp:t": 9, "own": 10}
            returned = await s.append_event(a, Event(author="bot", actions=EventActions(state_delta=dict(delta))))
            # temp: is visible in the live session object for the rest of the invocation only.
            assert a.state["temp:t"] == 9
            assert "temp:t" not in returned.actions.state_delta
            await s.append_event(c, Event(author="bot", actions=EventActions(state_delta={"user:u": "bob's"})))
            read = {
                sid: await s.get_session(app_name=app, user_id=user, session_id=sid)
                for user, sid in [("alice", "a"), ("alice", "b"), ("bob", "c")]
            }
            listed = await s.list_sessions(app_name=app)
            listed_alice = await s.list_sessions(app_name=app, user_id="alice")
            return {
                "states": {k: v.state for k, v in read.items() if v is not None},
                "events": {k: dump(v.events) for k, v in read.items() if v is not None},
                "listed": [(x.user_id, x.id, x.state, x.last_update_time, x.events) for x in listed.sessions],
                "listed_alice": [x.id for x in listed_alice.sessions],
                "user_state": await s.get_user_state(app_name=app, user_id="alice"),
            }

        want, got = await both([memory, service], scenario, deterministic)
        assert got == want
        assert got["states"] == {
            "a": {"own": 10, "app:v": 2, "app:w": [1, 2], "user:u": "y"},
            "b": {"own": 2, "app:v": 2, "app:w": [1, 2], "user:u": "y"},
            "c": {"app:v": 2, "app:w": [1, 2], "user:u": "bob's"},
        }
        assert [x[1] for x in got["listed"]] == ["b", "a", "c"]  # by last update: b never changed
        assert got["listed_alice"] == ["b", "a"]
        assert got["user_state"] == {"u": "y"}
        assert (await service.list_sessions(app_name=app, user_id="nobody")).sessions == []
        assert (await service.list_sessions(app_name=app + "-other")).sessions == []


async def test_concurrent_appends_to_one_session(server: Batond) -> None:
    app = app_name()
    writers, per_writer = 16, 5
    async with BatonSessionService(target=server.target) as service:
        session = await service.create_session(app_name=app, user_id="u")

        async def writer(w: int) -> None:
            for i in range(per_writer):
                delta = {f"w{w}": i, "app:last": w}
                await service.append_event(session, Event(author=f"w{w}", actions=EventActions(state_delta=delta)))

        # Parallel branches share one Session object, as ADK's parallel agents do.
        await asyncio.gather(*(writer(w) for w in range(writers)))
        stored = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert stored is not None
        assert_writers_kept(stored.events, writers, per_writer)
        assert [e.id for e in stored.events] == [e.id for e in session.events]  # the live object agrees
        assert {k: v for k, v in stored.state.items() if k.startswith("w")} == {
            f"w{w}": per_writer - 1 for w in range(writers)
        }
        assert stored.state["app:last"] == session.state["app:last"]


async def test_concurrent_replicas_retry_stale_sessions(server: Batond) -> None:
    """16 writers, each with its own client (as 16 replicas would be), on one session: an append
    from a session object another writer has overtaken is refused as stale, written nowhere, and
    the writer reloads and retries; in the end every event is there once, in each writer's order."""
    app = app_name()
    writers, per_writer = 16, 3
    services = [BatonSessionService(target=server.target) for _ in range(writers)]
    try:
        session = await services[0].create_session(app_name=app, user_id="u", session_id="shared")
        stale = 0

        async def writer(w: int) -> None:
            nonlocal stale
            s = services[w]
            for i in range(per_writer):
                while True:
                    current = await s.get_session(app_name=app, user_id="u", session_id=session.id)
                    assert current is not None
                    try:
                        await s.append_event(current, Event(author=f"w{w}", invocation_id=f"{w}-{i}"))
                        break
                    except StaleSessionError:
                        stale += 1

        await asyncio.gather(*(writer(w) for w in range(writers)))
        stored = await services[0].get_session(app_name=app, user_id="u", session_id=session.id)
        assert stored is not None
        assert_writers_kept(stored.events, writers, per_writer)
        assert stale > 0  # the writers did race
    finally:
        for s in services:
            await s.close()


def assert_writers_kept(events: List[Event], writers: int, per_writer: int) -> None:
    assert len(events) == writers * per_writer
    assert len({e.id for e in events}) == len(events)
    for w in range(writers):
        mine = [e for e in events if e.author == f"w{w}"]
        assert len(mine) == per_writer
        order = [e.invocation_id or str(e.actions.state_delta.get(f"w{w}")) for e in mine]
        assert order == sorted(order, key=lambda x: int(x.split("-")[-1])), order


async def test_stale_session_object_is_refused(server: Batond) -> None:
    app = app_name()
    async with BatonSessionService(target=server.target) as one, BatonSessionService(target=server.target) as two:
        await one.create_session(app_name=app, user_id="u", session_id="s")
        a = await one.get_session(app_name=app, user_id="u", session_id="s")
        b = await two.get_session(app_name=app, user_id="u", session_id="s")
        assert a is not None and b is not None
        await two.append_event(b, Event(author="two", invocation_id="i-b"))
        with pytest.raises(StaleSessionError):
            await one.append_event(a, Event(author="one", invocation_id="i-a"))
        assert a.events == []  # nothing applied
        # A session object this service did not load (no storage marker) is checked against the
        # newest stored event, as DatabaseSessionService does.
        handmade = Session(app_name=app, user_id="u", id="s", events=list(b.events), last_update_time=0.0)
        await one.append_event(handmade, Event(author="one", invocation_id="i-c"))
        behind = Session(app_name=app, user_id="u", id="s", last_update_time=0.0)
        with pytest.raises(StaleSessionError):
            await one.append_event(behind, Event(author="one", invocation_id="i-d"))
        stored = await one.get_session(app_name=app, user_id="u", session_id="s")
        assert stored is not None and [e.invocation_id for e in stored.events] == ["i-b", "i-c"]
        # Re-delivering an event already stored is a no-op (same idempotency key).
        again = stored.events[-1].model_copy()
        await one.append_event(stored, again)
        assert len(stored.events) == 2
        with pytest.raises(SessionNotFoundError):
            await one.append_event(Session(app_name=app, user_id="u", id="missing"), Event(author="x"))


async def test_restart_mid_run_continues_without_duplicates(
    own_server: Batond, deterministic: Callable[[], None]
) -> None:
    app = app_name()
    reference = await converse(InMemorySessionService(), app)
    restarts: List[threading.Thread] = []

    def restart_batond(city: str) -> None:
        # batond goes down while the run goes on: the tool's result, the model's answer and the
        # state writes meet a restarting server and are retried by the client.
        for previous in restarts:
            previous.join(60)
        t = threading.Thread(target=own_server.restart, daemon=True)
        t.start()
        restarts.append(t)

    deterministic()
    retry = baton.RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.5)
    async with BatonSessionService(target=own_server.target, timeout=60.0, retry=retry) as service:
        got = await converse(service, app, on_call=restart_batond)
        for t in restarts:
            t.join(60)
        assert own_server.starts == 3
        assert_same(got, reference)
        entries = (await service.client.list_entries(session_key=baton_key(service, app, "alice", got.id))).entries
        assert len(entries) == len(reference.events) == 10


async def test_two_replicas_share_a_session(server: Batond) -> None:
    app = app_name()
    async with BatonSessionService(target=server.target) as one, BatonSessionService(target=server.target) as two:
        s = await one.create_session(app_name=app, user_id="alice")
        r1, _ = runner(one, app, [call("Paris"), say("Paris: sunny.")])
        await turn(r1, "alice", s.id, "Paris?")
        r2, model2 = runner(two, app, [say("You asked about Paris.")])
        await turn(r2, "alice", s.id, "What did I ask?")
        # Replica two's model was given replica one's turn as history, and the other way round.
        assert "Paris: sunny." in model2.seen[0]
        r1b, model1b = runner(one, app, [say("Still Paris.")])
        await turn(r1b, "alice", s.id, "Again?")
        assert "You asked about Paris." in model1b.seen[0]
        for service in (one, two):
            got = await service.get_session(app_name=app, user_id="alice", session_id=s.id)
            assert got is not None
            texts = [p.text for e in got.events for p in (e.content.parts if e.content else []) if p.text]
            assert texts == [
                "Paris?",
                "Paris: sunny.",
                "What did I ask?",
                "You asked about Paris.",
                "Again?",
                "Still Paris.",
            ]
            assert got.state["last_answer"] == "Still Paris."
            assert got.state["user:last_city"] == "Paris"


async def test_create_and_delete_session(server: Batond) -> None:
    app = app_name()
    client = baton.AsyncClient(server.target)
    try:
        service = BatonSessionService(client)
        s = await service.create_session(app_name=app, user_id="u", session_id=" my id/with spaces ", state={"k": 1})
        assert s.id == "my id/with spaces"
        with pytest.raises(AlreadyExistsError):
            await service.create_session(app_name=app, user_id="u", session_id="my id/with spaces")
        # The same id for another user or app is another session.
        await service.create_session(app_name=app, user_id="v", session_id=s.id)
        generated = await service.create_session(app_name=app, user_id="u", state={"user:seen": True})
        assert generated.id and generated.id != s.id
        await service.append_event(s, Event(author="bot", actions=EventActions(state_delta={"k": 2})))
        await service.delete_session(app_name=app, user_id="u", session_id=s.id)
        assert await service.get_session(app_name=app, user_id="u", session_id=s.id) is None
        assert [x.id for x in (await service.list_sessions(app_name=app, user_id="u")).sessions] == [generated.id]
        await service.delete_session(app_name=app, user_id="u", session_id=s.id)  # gone already: no error
        assert await service.get_session(app_name=app, user_id="v", session_id=s.id) is not None
        # User state outlives the session, as in ADK's own services; a new session may take the id.
        again = await service.create_session(app_name=app, user_id="u", session_id=s.id)
        assert again.state == {"user:seen": True}
        await service.close()  # the caller's client stays open
        assert (await client.get_session(session_key=baton_key(service, app, "u", s.id))).session_key
    finally:
        await client.close()


def test_example_runs(server: Batond) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI")}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), server.target], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1:3] == ["  forecaster: Sunny and 21 °C in Lisbon.", "  forecaster: You asked about Lisbon."]
    assert "6 events in Baton; state:" in lines
    assert "  user:last_city = 'Lisbon'" in lines
    assert "alice has 1 session(s) in app weather" in lines
    assert lines[-1] == "session deleted"
