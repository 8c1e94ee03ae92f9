"""Read-your-writes through a read replica, on both clients: batond reads from a replica that is
held back (it applies nothing written after it was made), so a read served by it misses every
write of the test, and only a client that sends its log position back (``baton-min-lsn``) is
served by the primary."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import List

import pytest

import baton
from conftest import Batond

POSITION = re.compile(r"^[0-9A-F]{16}$")


def tenant() -> str:
    return f"py-replica-{uuid.uuid4().hex[:12]}"


def wait_for_replica(target: str, tenant: str) -> None:
    """Until batond's first probe found the replica, reads go to the primary; a read the
    replica serves answers with the position it replayed, so a fresh client has one after it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with baton.Client(target, tenant=tenant) as probe:
            probe.list_sessions()
            if probe.log_position is not None:
                return
        time.sleep(0.1)
    pytest.fail("batond never served a read from the read replica")


def keys(response: baton.v1.context_pb2.ListSessionsResponse) -> List[str]:
    return [s.session_key for s in response.sessions]


def test_reads_follow_the_clients_own_writes(replica_server: Batond) -> None:
    t = tenant()
    wait_for_replica(replica_server.target, t)
    with baton.Client(replica_server.target, tenant=t) as a:
        assert a.log_position is None
        s = a.create_session(agent="writer")
        created = a.log_position
        assert created is not None and POSITION.match(created), created
        a.append_entries(session_key=s.session_key, entries=[{"kind": "message", "author": "writer", "text": "hi"}])
        appended = a.log_position
        assert appended is not None and appended >= created
        assert s.session_key in keys(a.list_sessions()), "A sent its position: the primary served it"

        with baton.Client(replica_server.target, tenant=t) as b:
            assert s.session_key not in keys(b.list_sessions()), "B has no position: the held-back replica served it"
            assert b.log_position is not None and b.log_position < created, "the replica's position"

        with baton.Client(replica_server.target, tenant=t, log_position=appended) as handed:
            assert handed.log_position == appended
            assert s.session_key in keys(handed.list_sessions()), "a handed-over position reads A's writes"

    with pytest.raises(ValueError, match="log position"):
        baton.Client(replica_server.target, tenant=t, log_position="0/16B3748")
    with baton.Client(replica_server.target, tenant=t, log_position="16b3748") as short:
        assert short.log_position == "00000000016B3748"


def test_reads_follow_the_clients_own_writes_async(replica_server: Batond) -> None:
    t = tenant()
    wait_for_replica(replica_server.target, t)

    async def run() -> None:
        async with baton.AsyncClient(replica_server.target, tenant=t) as a:
            assert a.log_position is None
            s = await a.create_session(agent="writer")
            created = a.log_position
            assert created is not None and POSITION.match(created), created
            assert s.session_key in keys(await a.list_sessions())
            async with baton.AsyncClient(replica_server.target, tenant=t) as b:
                assert s.session_key not in keys(await b.list_sessions())
            async with baton.AsyncClient(replica_server.target, tenant=t, log_position=created) as handed:
                assert s.session_key in keys(await handed.list_sessions())

    asyncio.run(run())
