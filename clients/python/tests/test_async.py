"""The asyncio client (grpc.aio) against a real batond: every RPC, errors, resumable streams,
a retried append and deadlines."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Dict, List, Tuple

import pytest

import baton
from baton.v1 import common_pb2
from conftest import Batond, DropProxy


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def msg(author: str, text: str, kind: str = "message") -> Dict[str, Any]:
    return {"kind": kind, "role": "assistant", "author": author, "text": text}


async def test_every_rpc_async(server: Batond) -> None:
    a, b = key("planner"), key("coder")
    async with baton.AsyncClient(server.target, tenant="py-async") as c:
        s = await c.create_session(agent=a, metadata={"project": "demo"})
        assert s.tenant == "py-async" and s.owner == a
        assert (await c.get_session(session_key=s.session_key)).session_key == s.session_key
        listed = await c.list_sessions(agent=a)
        assert [x.session_key for x in listed.sessions] == [s.session_key]
        updated = await c.update_session(session_key=s.session_key, status="dormant")
        assert updated.status == common_pb2.SESSION_STATUS_DORMANT
        r = await c.append_entries(session_key=s.session_key, entries=[msg(a, "alpha"), msg(a, "beta", "tool_call")])
        assert (r.first_seq, r.last_seq) == (1, 2) and r.entries[0].idempotency_key
        page = await c.list_entries(session_key=s.session_key, kinds=["tool_call"])
        assert [e.seq for e in page.entries] == [2]
        assert [e.seq async for e in c.stream_entries(session_key=s.session_key)] == [1, 2]
        window = await c.get_context_window(session_key=s.session_key)
        assert [e.seq for e in window.entries] == [1, 2]
        hits = await c.search_entries(session_key=s.session_key, query="alpha")
        assert [h.entry.seq for h in hits.hits] == [1]

        h = await c.request_handoff(session_key=s.session_key, from_agent=a, to_agent=b, type="full_handoff")
        assert (await c.get_handoff(handoff_id=h.handoff_id)).to_agent == b
        assert [x.handoff_id for x in (await c.list_handoffs(from_agent=a)).handoffs] == [h.handoff_id]
        async for ev in c.watch_handoffs(agent=b, timeout=10):
            assert ev.handoff.handoff_id == h.handoff_id and ev.type == common_pb2.HANDOFF_EVENT_TYPE_CREATED
            break
        await c.accept_handoff(handoff_id=h.handoff_id, agent=b)
        package = [e async for e in c.stream_handoff_context(handoff_id=h.handoff_id)]
        assert [e.seq for e in package if e.kind != common_pb2.ENTRY_KIND_SUMMARY][-2:] == [1, 2]
        assert (
            await c.complete_handoff(handoff_id=h.handoff_id, agent=b)
        ).status == common_pb2.HANDOFF_STATUS_COMPLETED
        h2 = await c.request_handoff(session_key=s.session_key, from_agent=b, to_agent=a, type="collaboration")
        assert (await c.reject_handoff(handoff_id=h2.handoff_id, agent=a)).status == common_pb2.HANDOFF_STATUS_REJECTED
        h3 = await c.request_handoff(session_key=s.session_key, from_agent=b, to_agent=a, type="collaboration")
        assert (await c.cancel_handoff(handoff_id=h3.handoff_id, agent=b)).status == common_pb2.HANDOFF_STATUS_CANCELLED
        assert (await c.close_session(session_key=s.session_key)).status == common_pb2.SESSION_STATUS_CLOSED


async def test_errors_async(server: Batond) -> None:
    async with baton.AsyncClient(server.target) as c:
        with pytest.raises(baton.BatonError) as ei:
            await c.get_handoff(handoff_id=key("missing"))
        assert ei.value.code == "NOT_FOUND"
        s = await c.create_session(agent="a")
        with pytest.raises(baton.BatonError) as ei:
            await c.append_entries(session_key=s.session_key, entries=[{"kind": "message", "text": "x"}])
        assert ei.value.code == "INVALID_ARGUMENT"
        assert [f for f, _ in ei.value.field_violations] == ["entries[0].author"]


async def test_deadline_async(server: Batond) -> None:
    async with baton.AsyncClient(server.target) as c:
        s = await c.create_session(agent="a")
        start = time.monotonic()
        with pytest.raises(baton.BatonError) as ei:
            async for _ in c.stream_entries(session_key=s.session_key, follow=True, timeout=0.5):
                pass
        assert ei.value.code == "DEADLINE_EXCEEDED" and time.monotonic() - start < 5


async def test_append_retried_after_lost_answer_async(server: Batond, drop_proxy: DropProxy) -> None:
    direct = baton.Client(server.target)
    s = direct.create_session(agent="a")
    async with baton.AsyncClient(drop_proxy.target) as c:
        await c.get_session(session_key=s.session_key)
        drop_proxy.arm(lambda: direct.get_session(session_key=s.session_key).last_seq >= 1)
        r = await c.append_entries(session_key=s.session_key, entries=[msg("a", "once")])
        assert drop_proxy.dropped == 1
    assert r.last_seq == 1
    assert [e.text for e in direct.list_entries(session_key=s.session_key).entries] == ["once"]
    direct.close()


async def test_follow_stream_survives_restart_async(own_server: Batond) -> None:
    n = 8
    async with baton.AsyncClient(own_server.target) as c:
        s = await c.create_session(agent="a")
        for i in range(1, 5):
            await c.append_entries(session_key=s.session_key, entries=[msg("a", f"e{i}")])
        seen: List[int] = []
        four = asyncio.Event()

        async def follow() -> None:
            async with baton.AsyncClient(own_server.target) as reader:
                async for e in reader.stream_entries(session_key=s.session_key, follow=True, timeout=90):
                    seen.append(e.seq)
                    if len(seen) == 4:
                        four.set()
                    if len(seen) == n:
                        return

        task = asyncio.create_task(follow())
        await asyncio.wait_for(four.wait(), 30)
        await asyncio.get_running_loop().run_in_executor(None, own_server.restart)
        for i in range(5, n + 1):
            await c.append_entries(session_key=s.session_key, entries=[msg("a", f"e{i}")])
        await asyncio.wait_for(task, 90)
    assert seen == list(range(1, n + 1))


async def test_watch_handoffs_resumes_after_restart_async(own_server: Batond) -> None:
    a, b = key("a"), key("b")
    async with baton.AsyncClient(own_server.target) as c:
        s = await c.create_session(agent=a)
        first = await c.request_handoff(session_key=s.session_key, from_agent=a, to_agent=b, type="collaboration")
        events: List[Tuple[int, int, str]] = []
        one = asyncio.Event()

        async def watch() -> None:
            async with baton.AsyncClient(own_server.target) as w:
                async for ev in w.watch_handoffs(agent=b, timeout=90):
                    events.append((ev.cursor, ev.type, ev.handoff.handoff_id))
                    one.set()
                    if len(events) == 2:
                        return

        task = asyncio.create_task(watch())
        await asyncio.wait_for(one.wait(), 30)
        await asyncio.get_running_loop().run_in_executor(None, own_server.restart)
        await c.reject_handoff(handoff_id=first.handoff_id, agent=b, reason="no")
        await asyncio.wait_for(task, 90)
    assert [(t, h) for _, t, h in events] == [
        (common_pb2.HANDOFF_EVENT_TYPE_CREATED, first.handoff_id),
        (common_pb2.HANDOFF_EVENT_TYPE_REJECTED, first.handoff_id),
    ]
    assert events[0][0] < events[1][0]
