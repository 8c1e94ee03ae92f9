"""Python client of Baton, the context and handoff service for AI agents.

``baton.Client`` (synchronous) and ``baton.AsyncClient`` (asyncio, ``grpc.aio``) have one method
per RPC of ``baton.v1.ContextService`` and ``baton.v1.HandoffService``; the messages are in
``baton.v1``; every failed call raises ``baton.BatonError``::

    import baton

    with baton.Client("localhost:50051") as c:
        s = c.create_session(agent="planner")
        c.append_entries(session_key=s.session_key,
                         entries=[{"kind": "message", "author": "planner", "text": "hello"}])
        for entry in c.stream_entries(session_key=s.session_key):
            print(entry.seq, entry.text)
"""

from baton import v1
from baton._aio import AsyncClient
from baton._core import LSN_HEADER, MIN_LSN_HEADER, UNSET, RetryPolicy, Timeout
from baton._errors import BatonError, FieldViolation
from baton._sync import Client

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BatonError",
    "Client",
    "FieldViolation",
    "LSN_HEADER",
    "MIN_LSN_HEADER",
    "RetryPolicy",
    "Timeout",
    "UNSET",
    "v1",
    "__version__",
]
