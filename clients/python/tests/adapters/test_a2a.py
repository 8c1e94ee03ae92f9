"""BatonTaskStore (baton.integrations.a2a) under the a2a-sdk's real request handler, against a
real batond.

The agent is a scripted AgentExecutor, not a model: per user turn it emits a fixed list of status
updates and artifacts with fixed ids and timestamps (no LLM is involved; a model is not the
system under test). The same script run with the SDK's InMemoryTaskStore is the reference: the
tasks Baton holds must read back equal to it, and a run must store exactly as many versions as
that store got saves (no conflict in a normal run, no duplicate after a retry).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Awaitable, Callable, List, Optional, Sequence, Tuple

import pytest
from a2a.auth.user import User
from a2a.server.agent_execution import AgentExecutor, RequestContext, SimpleRequestContextBuilder
from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.id_generator import IDGenerator, IDGeneratorContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import TaskNotFoundError
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

import baton
from baton.integrations.a2a import BatonTaskStore, TaskConflictError
from conftest import Batond, DropProxy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "a2a_task_store.py"
T0 = datetime(2025, 5, 1, 9, 0, tzinfo=timezone.utc)

WORKING = TaskState.TASK_STATE_WORKING
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED
COMPLETED = TaskState.TASK_STATE_COMPLETED

# (user text, steps): a step is ("status", state, agent text) or ("artifact", id, text, append).
SCRIPT: List[Tuple[str, List[tuple]]] = [
    (
        "Plan three days in Lisbon.",
        [
            ("status", WORKING, "Looking at the map."),
            ("artifact", "itinerary", "Day 1: Alfama and the castle.", False),
            ("artifact", "itinerary", "Day 2: Belem and the river.", True),
            ("status", INPUT_REQUIRED, "Shall I add a day trip to Sintra?"),
        ],
    ),
    (
        "Yes, add Sintra.",
        [
            ("status", WORKING, "Adding Sintra."),
            ("artifact", "itinerary", "Day 3: Sintra.", True),
            ("artifact", "budget", "About 450 EUR.", False),
            ("status", COMPLETED, "Your plan is ready."),
        ],
    ),
]

Hook = Callable[[int, int], Awaitable[None]]


class ScriptedExecutor(AgentExecutor):
    """Plays SCRIPT: the turn is chosen by the user's text; `hook(turn, step)` runs before each
    step (a test's way to act in the middle of a run)."""

    def __init__(self, hook: Optional[Hook] = None) -> None:
        self.hook = hook

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        text = context.message.parts[0].text
        turn = next(i for i, (said, _) in enumerate(SCRIPT) if said == text)
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED, timestamp=stamp(turn, 0)),
                    history=[context.message],
                )
            )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        for step, action in enumerate(SCRIPT[turn][1], start=1):
            if self.hook is not None:
                await self.hook(turn, step)
            if action[0] == "status":
                _, state, said = action
                reply = Message(
                    message_id=f"agent-{turn}-{step}",
                    role=Role.ROLE_AGENT,
                    parts=[Part(text=said)],
                    task_id=context.task_id,
                    context_id=context.context_id,
                )
                await updater.update_status(state, message=reply, timestamp=stamp(turn, step).ToJsonString())
            else:
                _, artifact_id, said, append = action
                await updater.add_artifact([Part(text=said)], artifact_id=artifact_id, name=artifact_id, append=append)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def stamp(turn: int, step: int) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(T0 + timedelta(minutes=10 * turn + step))
    return ts


class FixedId(IDGenerator):
    def __init__(self, value: str) -> None:
        self.value = value

    def generate(self, context: IDGeneratorContext) -> str:
        return self.value


class Person(User):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.name


class CountingMemoryStore(InMemoryTaskStore):
    """The SDK's in-memory store, counting saves."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(self, task: Task, context: ServerCallContext) -> None:
        self.saves += 1
        await super().save(task, context)


def call(user: str = "alice", tenant: str = "") -> ServerCallContext:
    return ServerCallContext(user=Person(user), tenant=tenant)


def handler_for(store: TaskStore, task_id: str, context_id: str, hook: Optional[Hook] = None) -> DefaultRequestHandler:
    card = AgentCard(
        name="trip planner",
        description="Plans trips (scripted)",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url="http://localhost:9999/", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="plan", name="plan", description="Plans a trip", tags=["travel"])],
    )
    builder = SimpleRequestContextBuilder(task_id_generator=FixedId(task_id), context_id_generator=FixedId(context_id))
    return DefaultRequestHandler(
        agent_executor=ScriptedExecutor(hook), task_store=store, agent_card=card, request_context_builder=builder
    )


async def run_script(handlers: Sequence[DefaultRequestHandler], task_id: str, context: ServerCallContext) -> List[Task]:
    """Sends the script's user turns, turn i through handlers[i % len(handlers)]; returns the
    task each send answered with."""
    answers = []
    for turn, (said, _) in enumerate(SCRIPT):
        message = Message(message_id=f"user-{turn}", role=Role.ROLE_USER, parts=[Part(text=said)])
        if answers:
            message.task_id, message.context_id = task_id, answers[0].context_id
        answer = await handlers[turn % len(handlers)].on_message_send(SendMessageRequest(message=message), context)
        assert isinstance(answer, Task), answer
        answers.append(answer)
    return answers


async def reference(task_id: str, context_id: str, context: ServerCallContext) -> Tuple[Task, int]:
    """The task the SDK's InMemoryTaskStore holds after the script, and how many saves it got."""
    memory = CountingMemoryStore()
    handler = handler_for(memory, task_id, context_id)
    await run_script([handler], task_id, context)
    await handler.aclose()
    task = await memory.get(task_id, context)
    assert task is not None
    return task, memory.saves


async def stored_versions(client: baton.AsyncClient, key: str) -> List[Task]:
    entries = (await client.list_entries(session_key=key, page_size=1000)).entries
    return [json_format.Parse(e.text, Task()) for e in entries]


def expected_final() -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    history = [
        "Plan three days in Lisbon.",
        "Looking at the map.",
        "Shall I add a day trip to Sintra?",
        "Yes, add Sintra.",
        "Adding Sintra.",
    ]
    artifacts = [
        ("itinerary", ["Day 1: Alfama and the castle.", "Day 2: Belem and the river.", "Day 3: Sintra."]),
        ("budget", ["About 450 EUR."]),
    ]
    return history, artifacts


def describe(task: Task) -> Tuple[List[str], List[Tuple[str, List[str]]]]:
    return [m.parts[0].text for m in task.history], [(a.artifact_id, [p.text for p in a.parts]) for a in task.artifacts]


# --- the request handler over Baton equals the SDK's in-memory store ----------------------------


async def test_multi_turn_task_matches_in_memory_store(server: Batond) -> None:
    ctx = call("alice")
    want, saves = await reference("trip-1", "ctx-1", ctx)
    assert describe(want) == expected_final()
    assert want.status.state == COMPLETED and want.status.message.parts[0].text == "Your plan is ready."

    async with BatonTaskStore(target=server.target) as store:
        handler = handler_for(store, "trip-1", "ctx-1")
        answers = await run_script([handler], "trip-1", ctx)
        assert [a.status.state for a in answers] == [INPUT_REQUIRED, COMPLETED]
        got = await store.get("trip-1", ctx)
        assert got == want
        assert await handler.on_get_task(GetTaskRequest(id="trip-1"), ctx) == want
        await handler.aclose()

        # One version per save of the reference run: no save conflicted, none was stored twice.
        versions = await stored_versions(store.client, store.session_key("trip-1", ctx))
        assert len(versions) == saves
        assert versions[-1] == want
        assert versions[0].status.state == TaskState.TASK_STATE_SUBMITTED
        states = [v.status.state for v in versions]
        assert INPUT_REQUIRED in states and states[-1] == COMPLETED

    # A fresh store (a restarted server) reads the same task.
    async with BatonTaskStore(target=server.target) as again:
        assert await again.get("trip-1", ctx) == want
        listed = await again.list(ListTasksRequest(), ctx)
        assert list(listed.tasks) == [want] and listed.total_size == 1


async def test_sixteen_tasks_concurrently(server: Batond) -> None:
    ctx = call("carol")
    wanted = [await reference(f"trip-{i}", f"ctx-{i}", ctx) for i in range(16)]
    async with BatonTaskStore(target=server.target) as store:
        handlers = [handler_for(store, f"trip-{i}", f"ctx-{i}") for i in range(16)]
        await asyncio.gather(*(run_script([h], f"trip-{i}", ctx) for i, h in enumerate(handlers)))
        for i, (h, (want, saves)) in enumerate(zip(handlers, wanted)):
            await h.aclose()
            assert await store.get(f"trip-{i}", ctx) == want
            assert len(await stored_versions(store.client, store.session_key(f"trip-{i}", ctx))) == saves
        listed = await store.list(ListTasksRequest(page_size=100), ctx)
        assert listed.total_size == 16 and sorted(t.id for t in listed.tasks) == sorted(f"trip-{i}" for i in range(16))


async def test_two_replicas_share_one_task(server: Batond) -> None:
    """Turn 1 is handled by replica A, turn 2 by replica B: two handlers, two stores, two
    clients; each sees the other's turns."""
    ctx = call("dave")
    want, saves = await reference("trip-r", "ctx-r", ctx)
    async with baton.AsyncClient(server.target) as client_a, baton.AsyncClient(server.target) as client_b:
        store_a, store_b = BatonTaskStore(client_a), BatonTaskStore(client_b)
        replica_a = handler_for(store_a, "trip-r", "ctx-r")
        replica_b = handler_for(store_b, "trip-r", "ctx-r")
        answers = await run_script([replica_a, replica_b], "trip-r", ctx)
        assert answers[1].status.state == COMPLETED
        # B's answer holds A's turn: history and artifacts of both.
        assert describe(answers[1]) == expected_final()
        assert await store_a.get("trip-r", ctx) == want
        assert await store_b.get("trip-r", ctx) == want
        assert await replica_a.on_get_task(GetTaskRequest(id="trip-r"), ctx) == want
        assert len(await stored_versions(client_a, store_a.session_key("trip-r", ctx))) == saves
        await replica_a.aclose()
        await replica_b.aclose()
        # A client given to the store stays open after the store is closed.
        await store_a.close()
        assert (await store_a.list(ListTasksRequest(), ctx)).total_size == 1


async def test_batond_restart_in_the_middle_of_a_run(own_server: Batond) -> None:
    """batond stops while the agent is between two events of the first turn and comes back a
    moment later: the handler's saves wait and retry, the run completes, nothing is stored twice."""
    ctx = call("erin")
    want, saves = await reference("trip-x", "ctx-x", ctx)
    starter = threading.Thread(target=lambda: (time.sleep(0.5), own_server.start()), daemon=True)

    async def hook(turn: int, step: int) -> None:
        if (turn, step) == (0, 3):
            await asyncio.to_thread(own_server.stop)
            starter.start()  # back in half a second; meanwhile the agent goes on

    class Watched(BatonTaskStore):
        saves_while_down = 0

        async def save(self, task: Task, context: ServerCallContext) -> None:
            if own_server.proc is None:
                self.saves_while_down += 1
            await super().save(task, context)

    async with Watched(target=own_server.target, timeout=60.0) as store:
        handler = handler_for(store, "trip-x", "ctx-x", hook)
        answers = await run_script([handler], "trip-x", ctx)
        await handler.aclose()
        starter.join(timeout=120)
        assert own_server.starts == 2
        assert store.saves_while_down >= 1  # the handler did save while batond was away
        assert answers[-1].status.state == COMPLETED
        assert await store.get("trip-x", ctx) == want
        versions = await stored_versions(store.client, store.session_key("trip-x", ctx))
        assert len(versions) == saves
        assert len({v.SerializeToString(deterministic=True) for v in versions}) == saves


async def test_lost_answers_are_not_stored_twice(server: Batond, drop_proxy: DropProxy) -> None:
    """The answers of a save's CreateSession and of its AppendEntries are lost after batond did
    the work: the store retries the creation, the client the append (same idempotency key), and
    each version is stored once."""
    ctx = call("kim")
    direct = baton.Client(server.target)
    async with BatonTaskStore(target=drop_proxy.target) as store:
        key = store.session_key("lost", ctx)

        def stored(n: int) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    return direct.get_session(session_key=key).last_seq >= n
                except baton.BatonError:
                    return False

            return check

        assert await store.get("lost", ctx) is None  # connected through the proxy
        drop_proxy.arm(stored(0))
        task = Task(id="lost", context_id="c", status=TaskStatus(state=WORKING))
        await store.save(task, ctx)
        drop_proxy.arm(stored(2))
        await store.save(with_artifact(task, "once"), ctx)
        assert drop_proxy.dropped == 2
        first = Task(id="lost", context_id="c", status=TaskStatus(state=WORKING))
        assert await stored_versions(store.client, key) == [first, task]
    direct.close()


# --- scoping --------------------------------------------------------------------------------------


async def test_tenants_and_users_are_isolated(server: Batond) -> None:
    alice, bob, alice_elsewhere = call("alice", "acme"), call("bob", "acme"), call("alice", "globex")
    async with BatonTaskStore(target=server.target) as store:
        handler = handler_for(store, "trip-iso", "ctx-iso")
        await run_script([handler], "trip-iso", alice)
        await handler.aclose()
        task = await store.get("trip-iso", alice)
        assert task is not None and task.status.state == COMPLETED

        for other in (bob, alice_elsewhere):
            assert await store.get("trip-iso", other) is None
            assert (await store.list(ListTasksRequest(), other)).total_size == 0
            with pytest.raises(TaskNotFoundError):
                await handler.on_get_task(GetTaskRequest(id="trip-iso"), other)
            # The same id in another scope is another task.
            mine = Task(id="trip-iso", context_id="theirs", status=TaskStatus(state=WORKING))
            await store.save(mine, other)
            assert await store.get("trip-iso", other) == mine
            await store.delete("trip-iso", other)
        assert await store.get("trip-iso", alice) == task

        # Ids that a Baton key cannot hold are stored under a hash of the id.
        odd = Task(id="ünïcode id/with spaces " + "x" * 150, context_id="c", status=TaskStatus(state=WORKING))
        await store.save(odd, alice)
        assert await store.get(odd.id, alice) == odd
        assert await store.get(odd.id, bob) is None
        assert ":h:" in store.session_key(odd.id, alice)

    # Stores on two Baton tenants share nothing, even for the same A2A scope.
    async with (
        BatonTaskStore(target=server.target, tenant="tenant-one") as one,
        BatonTaskStore(target=server.target, tenant="tenant-two") as two,
    ):
        shared = Task(id="t-1", context_id="c", status=TaskStatus(state=WORKING))
        await one.save(shared, alice)
        assert await two.get("t-1", alice) is None
        assert (await two.list(ListTasksRequest(), alice)).total_size == 0
        assert await one.get("t-1", alice) == shared


# --- optimistic concurrency --------------------------------------------------------------------


def with_artifact(task: Task, artifact_id: str) -> Task:
    task.artifacts.append(Artifact(artifact_id=artifact_id, parts=[Part(text=artifact_id)]))
    return task


async def test_a_stale_save_never_overwrites_a_newer_version(server: Batond) -> None:
    ctx = call("frank")
    async with BatonTaskStore(target=server.target) as a, BatonTaskStore(target=server.target) as b:
        await a.save(Task(id="occ", context_id="c", status=TaskStatus(state=WORKING)), ctx)
        seen_a, seen_b = await a.get("occ", ctx), await b.get("occ", ctx)
        assert seen_a is not None and seen_b is not None

        await a.save(with_artifact(seen_a, "from-a"), ctx)
        with pytest.raises(TaskConflictError) as caught:
            await b.save(with_artifact(seen_b, "from-b"), ctx)
        assert isinstance(caught.value, ConcurrentTaskModificationError)
        assert caught.value.task_id == "occ" and caught.value.expected_version == 1
        assert "modified concurrently" in str(caught.value)
        stored = await b.get("occ", ctx)
        assert stored is not None and [x.artifact_id for x in stored.artifacts] == ["from-a"]
        # Redone on the newest version, B's change lands next to A's.
        await b.save(with_artifact(stored, "from-b"), ctx)
        final = await a.get("occ", ctx)
        assert final is not None and [x.artifact_id for x in final.artifacts] == ["from-a", "from-b"]

        # The version follows the object: a copy read earlier stays stale after the same store
        # has read and written newer ones.
        old, new = await a.get("occ", ctx), await a.get("occ", ctx)
        assert old is not None and new is not None
        await a.save(with_artifact(new, "newer"), ctx)
        with pytest.raises(TaskConflictError):
            await a.save(with_artifact(old, "lost"), ctx)

        # A store that never saw the task cannot create it over the existing one.
        async with BatonTaskStore(target=server.target) as c:
            with pytest.raises(TaskConflictError, match="exists already"):
                await c.save(Task(id="occ", context_id="c", status=TaskStatus(state=COMPLETED)), ctx)

        # A save after a concurrent delete is a conflict too, not a resurrection.
        gone = await a.get("occ", ctx)
        assert gone is not None
        await b.delete("occ", ctx)
        with pytest.raises(TaskConflictError, match="deleted"):
            await a.save(with_artifact(gone, "late"), ctx)
        assert await b.get("occ", ctx) is None

        # The same change saved twice from the same version (a caller retrying a save whose
        # answer it never got) is stored once.
        await a.save(Task(id="twice", context_id="c", status=TaskStatus(state=WORKING)), ctx)
        first, again = await a.get("twice", ctx), await b.get("twice", ctx)
        assert first is not None and again is not None
        await a.save(with_artifact(first, "one"), ctx)
        await b.save(with_artifact(again, "one"), ctx)
        assert len(await stored_versions(a.client, a.session_key("twice", ctx))) == 2


async def test_a_stale_cancel_applies_to_the_newest_version(server: Batond) -> None:
    ctx = call("grace")
    async with BatonTaskStore(target=server.target) as a, BatonTaskStore(target=server.target) as b:
        await a.save(Task(id="cx", context_id="c", status=TaskStatus(state=WORKING)), ctx)
        seen = await b.get("cx", ctx)
        running = await a.get("cx", ctx)
        assert seen is not None and running is not None
        await a.save(with_artifact(running, "progress"), ctx)

        seen.status.state = TaskState.TASK_STATE_CANCELED
        await b.save(seen, ctx)
        got = await a.get("cx", ctx)
        assert got is not None and got.status.state == TaskState.TASK_STATE_CANCELED
        assert [x.artifact_id for x in got.artifacts] == ["progress"]  # A's artifact kept
        # The cancelled object lacks A's artifact: saving it again would drop it, so it conflicts.
        with pytest.raises(TaskConflictError):
            await b.save(seen, ctx)

        # A task that ended meanwhile is not cancelled.
        late = await b.get("cx", ctx)
        done = await a.get("cx", ctx)
        assert late is not None and done is not None
        done.status.state = COMPLETED
        await a.save(done, ctx)  # from a CANCELED task, as a test of the rule only
        late.status.state = TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskConflictError, match="ended"):
            await b.save(late, ctx)


async def test_sixteen_concurrent_updates_lose_nothing(server: Batond) -> None:
    """16 writers on two stores each add one artifact to one task by read-modify-write. All
    read the first version before any writes, so exactly one wins the first round; the others
    get a conflict and redo their change on the newest version."""
    ctx = call("heidi")
    barrier = asyncio.Barrier(16)
    conflicts = 0
    async with BatonTaskStore(target=server.target) as a, BatonTaskStore(target=server.target) as b:
        await a.save(Task(id="busy", context_id="c", status=TaskStatus(state=WORKING)), ctx)

        async def writer(i: int) -> None:
            nonlocal conflicts
            store = (a, b)[i % 2]
            first = True
            while True:
                task = await store.get("busy", ctx)
                assert task is not None
                if first:
                    await barrier.wait()
                    first = False
                try:
                    await store.save(with_artifact(task, f"w{i}"), ctx)
                    return
                except TaskConflictError:
                    conflicts += 1

        await asyncio.gather(*(writer(i) for i in range(16)))
        final = await a.get("busy", ctx)
        assert final is not None
        assert sorted(x.artifact_id for x in final.artifacts) == sorted(f"w{i}" for i in range(16))
        assert conflicts >= 15
        # One version per successful save: a conflict writes nothing.
        assert len(await stored_versions(a.client, a.session_key("busy", ctx))) == 17


# --- list and delete ----------------------------------------------------------------------------


async def test_list_and_delete_match_the_in_memory_store(server: Batond) -> None:
    ctx = call("ivan")
    memory = InMemoryTaskStore()
    tasks = [
        Task(
            id=f"l-{i}",
            context_id=f"ctx-{i % 2}",
            status=TaskStatus(state=(WORKING, COMPLETED, INPUT_REQUIRED)[i % 3], timestamp=stamp(0, i % 4)),
            artifacts=[Artifact(artifact_id="a", parts=[Part(text=str(i))])],
            history=[Message(message_id=f"m{i}", role=Role.ROLE_USER, parts=[Part(text="hi")])],
        )
        for i in range(7)
    ]
    tasks.append(Task(id="l-nostamp", context_id="ctx-0", status=TaskStatus(state=WORKING)))
    async with BatonTaskStore(target=server.target) as store:
        for t in tasks:
            await store.save(t, ctx)
            await memory.save(t, ctx)
        await store.save(Task(id="l-other", context_id="ctx-0"), call("judy"))

        requests = [
            ListTasksRequest(),
            ListTasksRequest(context_id="ctx-1"),
            ListTasksRequest(status=COMPLETED),
            ListTasksRequest(status_timestamp_after=stamp(0, 2)),
            ListTasksRequest(context_id="ctx-0", status=WORKING),
            ListTasksRequest(context_id="nowhere"),
        ]
        for req in requests:
            assert await store.list(req, ctx) == await memory.list(req, ctx), req

        # Paging with page tokens visits every task once, in the in-memory store's order.
        pages: List[List[str]] = []
        token = ""
        while True:
            page = await store.list(ListTasksRequest(page_size=3, page_token=token), ctx)
            assert page == await memory.list(ListTasksRequest(page_size=3, page_token=token), ctx)
            pages.append([t.id for t in page.tasks])
            token = page.next_page_token
            if not token:
                break
        assert [len(p) for p in pages] == [3, 3, 2]
        assert sorted(i for p in pages for i in p) == sorted(t.id for t in tasks)

        await store.delete("l-3", ctx)
        await memory.delete("l-3", ctx)
        assert await store.get("l-3", ctx) is None
        assert await store.list(ListTasksRequest(), ctx) == await memory.list(ListTasksRequest(), ctx)
        await store.delete("l-3", ctx)  # deleting an absent task is a no-op, as in the SDK
        await store.delete("l-other", ctx)  # another user's task is not touched
        assert await store.get("l-other", call("judy")) is not None
        with pytest.raises(baton.BatonError) as err:
            await store.client.get_session(session_key=store.session_key("l-3", ctx))
        assert err.value.code == "NOT_FOUND"


# --- the example ---------------------------------------------------------------------------------


def test_example_runs(server: Batond) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), server.target],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["state"] == "TASK_STATE_COMPLETED"
    assert summary["replicas_agree"] is True
