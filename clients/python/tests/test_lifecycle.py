"""The data lifecycle RPCs against a real batond, on both clients: delete, fork, redact (and
retract-last), compact, retention and legal hold."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Dict, List

import pytest

import baton
from baton.v1 import common_pb2
from conftest import Batond


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def msg(author: str, text: str, kind: str = "message") -> Dict[str, Any]:
    return {"kind": kind, "role": "assistant", "author": author, "text": text}


def seeded(c: baton.Client, agent: str, n: int) -> common_pb2.Session:
    s = c.create_session(agent=agent)
    c.append_entries(session_key=s.session_key, entries=[msg(agent, f"entry {i}") for i in range(1, n + 1)])
    return s


def seqs(c: baton.Client, session_key: str, **fields: Any) -> List[int]:
    return [e.seq for e in c.list_entries(session_key=session_key, **fields).entries]


def test_delete_session_erases_it(server: Batond) -> None:
    a = key("agent")
    with baton.Client(server.target, tenant="py-life") as c:
        s = seeded(c, a, 3)
        gone = c.delete_session(session_key=s.session_key)
        assert gone.deleted_entries == 3
        with pytest.raises(baton.BatonError) as ei:
            c.get_session(session_key=s.session_key)
        assert ei.value.code == "NOT_FOUND"
        with pytest.raises(baton.BatonError) as ei:
            c.list_entries(session_key=s.session_key)
        assert ei.value.code == "NOT_FOUND"
        # Deleting again: there is nothing left to delete.
        with pytest.raises(baton.BatonError) as ei:
            c.delete_session(session_key=s.session_key)
        assert ei.value.code == "NOT_FOUND"


def test_fork_copies_entries_up_to_at_seq(server: Batond) -> None:
    a, b = key("planner"), key("explorer")
    with baton.Client(server.target, tenant="py-life") as c:
        src = seeded(c, a, 5)
        new_key = key("fork")
        fork = c.fork_session(session_key=src.session_key, at_seq=3, new_session_key=new_key, agent=b)
        assert fork.session_key == new_key and fork.owner == b
        assert fork.HasField("forked_from")
        assert (fork.forked_from.session_key, fork.forked_from.seq) == (src.session_key, 3)
        assert fork.last_seq == 3
        source_entries = c.list_entries(session_key=src.session_key).entries
        fork_entries = c.list_entries(session_key=new_key).entries
        assert [e.seq for e in fork_entries] == [1, 2, 3]
        assert [e.text for e in fork_entries] == [e.text for e in source_entries[:3]]
        # The fork goes on from at_seq + 1; the source is unchanged.
        r = c.append_entries(session_key=new_key, entries=[msg(b, "a different path")])
        assert r.first_seq == 4
        assert seqs(c, src.session_key) == [1, 2, 3, 4, 5]
        assert not c.get_session(session_key=src.session_key).HasField("forked_from")
        # A fork of the fork keeps the chain visible.
        grand = c.fork_session(session_key=new_key, at_seq=2, agent=a)
        assert grand.session_key not in ("", new_key)
        assert (grand.forked_from.session_key, grand.forked_from.seq) == (new_key, 2)
        parent = c.get_session(session_key=grand.forked_from.session_key)
        assert parent.forked_from.session_key == src.session_key


def test_redact_erases_content_and_keeps_the_seq(server: Batond) -> None:
    a = key("agent")
    with baton.Client(server.target, tenant="py-life") as c:
        s = seeded(c, a, 3)
        r = c.redact_entries(session_key=s.session_key, seqs=[2], reason="leaked a password", agent=a)
        assert [e.seq for e in r.entries] == [2]
        red = r.entries[0]
        # The content is empty (batond sends an empty text), never the old text or data.
        assert red.redacted and red.text == "" and red.data == b""
        assert red.author == a and red.kind == common_pb2.ENTRY_KIND_MESSAGE
        assert red.redaction.reason == "leaked a password" and red.redaction.redacted_by
        assert red.redaction.HasField("redacted_at")
        listed = c.list_entries(session_key=s.session_key).entries
        want = [(1, False, "entry 1"), (2, True, ""), (3, False, "entry 3")]
        assert [(e.seq, e.redacted, e.text) for e in listed] == want

        # Retract-last: a stale expected_last_seq changes nothing.
        with pytest.raises(baton.BatonError) as ei:
            c.redact_entries(session_key=s.session_key, seqs=[3], reason="retract", agent=a, expected_last_seq=2)
        assert ei.value.code == "FAILED_PRECONDITION"
        assert not c.list_entries(session_key=s.session_key, after_seq=2).entries[0].redacted
        r = c.redact_entries(session_key=s.session_key, seqs=[3], reason="retract", agent=a, expected_last_seq=3)
        assert r.entries[0].seq == 3 and r.entries[0].redacted


def test_compact_moves_first_seq(server: Batond) -> None:
    a = key("agent")
    with baton.Client(server.target, tenant="py-life") as c:
        s = seeded(c, a, 5)
        assert c.get_session(session_key=s.session_key).first_seq == 1
        compacted = c.compact_session(session_key=s.session_key, before_seq=3)
        assert compacted.first_seq == 3 and compacted.last_seq == 5
        assert c.get_session(session_key=s.session_key).first_seq == 3
        assert seqs(c, s.session_key, after_seq=2) == [3, 4, 5]
        with pytest.raises(baton.BatonError) as ei:
            c.list_entries(session_key=s.session_key, after_seq=1)
        assert ei.value.code == "OUT_OF_RANGE"
        with pytest.raises(baton.BatonError) as ei:
            list(c.stream_entries(session_key=s.session_key, after_seq=1))
        assert ei.value.code == "OUT_OF_RANGE"


def test_legal_hold_blocks_delete_and_retention_is_kept(server: Batond) -> None:
    a = key("agent")
    with baton.Client(server.target, tenant="py-life") as c:
        s = seeded(c, a, 2)
        held = c.update_session(session_key=s.session_key, legal_hold=True)
        assert held.legal_hold
        with pytest.raises(baton.BatonError) as ei:
            c.delete_session(session_key=s.session_key)
        assert ei.value.code == "FAILED_PRECONDITION"
        with pytest.raises(baton.BatonError) as ei:
            c.compact_session(session_key=s.session_key, before_seq=2)
        assert ei.value.code == "FAILED_PRECONDITION"
        with pytest.raises(baton.BatonError) as ei:
            c.redact_entries(session_key=s.session_key, seqs=[1], reason="r", agent=a)
        assert ei.value.code == "FAILED_PRECONDITION"
        assert seqs(c, s.session_key) == [1, 2]

        # Another update that does not name legal_hold leaves it set.
        kept = c.update_session(
            session_key=s.session_key, retention={"keep_latest": 100, "max_age": timedelta(days=30)}
        )
        assert kept.legal_hold
        assert kept.retention.keep_latest == 100 and kept.retention.max_age.ToTimedelta() == timedelta(days=30)
        assert c.get_session(session_key=s.session_key).retention.keep_latest == 100

        released = c.update_session(session_key=s.session_key, legal_hold=False)
        assert not released.legal_hold
        assert c.delete_session(session_key=s.session_key).deleted_entries == 2


async def test_lifecycle_async(server: Batond) -> None:
    a, b = key("agent"), key("other")
    async with baton.AsyncClient(server.target, tenant="py-life-async") as c:
        s = await c.create_session(agent=a)
        await c.append_entries(session_key=s.session_key, entries=[msg(a, f"e{i}") for i in range(1, 5)])
        fork = await c.fork_session(session_key=s.session_key, at_seq=2, agent=b)
        assert (fork.forked_from.session_key, fork.forked_from.seq) == (s.session_key, 2)
        assert [e.seq for e in (await c.list_entries(session_key=fork.session_key)).entries] == [1, 2]
        r = await c.redact_entries(session_key=s.session_key, seqs=[4], reason="oops", agent=a, expected_last_seq=4)
        assert r.entries[0].redacted and r.entries[0].text == ""
        compacted = await c.compact_session(session_key=s.session_key, before_seq=3)
        assert compacted.first_seq == 3
        held = await c.update_session(session_key=fork.session_key, legal_hold=True)
        assert held.legal_hold
        with pytest.raises(baton.BatonError) as ei:
            await c.delete_session(session_key=fork.session_key)
        assert ei.value.code == "FAILED_PRECONDITION"
        assert (await c.delete_session(session_key=s.session_key)).deleted_entries == 2
        with pytest.raises(baton.BatonError) as ei:
            await c.get_session(session_key=s.session_key)
        assert ei.value.code == "NOT_FOUND"
