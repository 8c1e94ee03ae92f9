"""The synchronous client, :class:`Client`."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Type, TypeVar, Union, cast

import grpc
from google.protobuf.message import Message

from baton import _core
from baton._core import (
    RPCS,
    UNSET,
    RetryPolicy,
    Timeout,
    resolve_timeout,
    resume_entries,
    resume_handoffs,
)
from baton._errors import BatonError
from baton.v1 import common_pb2, context_pb2, handoff_pb2

__all__ = ["Client"]

R = TypeVar("R", bound=Message)
Q = TypeVar("Q", bound=Message)


class Client(_core.PositionTracking):
    """A synchronous Baton client over one gRPC channel.

    One method per RPC of ``baton.v1.ContextService`` and ``baton.v1.HandoffService``. Each takes
    the generated request message, or its fields as keyword arguments, or both (the keywords are
    set on a copy of the message), and returns the generated response message::

        with baton.Client("localhost:50051", tenant="acme") as c:
            s = c.create_session(agent="planner")
            c.append_entries(session_key=s.session_key,
                             entries=[{"kind": "message", "author": "planner", "text": "hi"}])

    Every failure raises :class:`baton.BatonError`. Reads and appends are retried on
    UNAVAILABLE and RESOURCE_EXHAUSTED with exponential backoff and jitter (see
    :class:`baton.RetryPolicy`); ``stream_entries`` and ``watch_handoffs`` resume where they were
    after a reconnection.

    Args:
        target: ``host:port``; a ``http://`` or ``https://`` prefix is accepted (``https`` turns
            TLS on).
        tenant: Sent as the ``x-baton-tenant`` header (the server's default tenant when None).
        api_key: Sent as ``authorization: Bearer <api_key>``.
        tls: False for plaintext, True for TLS with the system's roots, or
            :class:`grpc.ChannelCredentials` of your own.
        timeout: Default deadline of a call in seconds, retries included (None: no deadline).
            Following streams (``stream_entries(follow=True)``, ``watch_handoffs``) have no
            default deadline; pass ``timeout=`` to give them one.
        retry: The retry policy.
        channel_options: Extra grpc channel options, e.g. ``[("grpc.primary_user_agent", "x")]``.
        log_position: A log position to start from, as another client's ``log_position`` gave
            it (e.g. handed over by the agent that wrote): this client's reads then reflect that
            client's writes, as they do its own (see ``log_position``).
    """

    def __init__(
        self,
        target: str,
        *,
        tenant: Optional[str] = None,
        api_key: Optional[str] = None,
        tls: Union[bool, grpc.ChannelCredentials] = False,
        timeout: Optional[float] = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        channel_options: Sequence[Tuple[str, Any]] = (),
        log_position: Optional[str] = None,
    ) -> None:
        address, tls = _core.parse_target(target, tls)
        creds = _core.credentials(tls)
        options = _core.CHANNEL_OPTIONS + list(channel_options)
        if creds is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, creds, options=options)
        self.target = address
        self.timeout = timeout
        self.retry = retry
        self._metadata = _core.base_metadata(tenant, api_key)
        self._position = _core.LogPosition(log_position)
        self._unary_calls, self._stream_calls = _core.multicallables(self._channel)

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # --- machinery ------------------------------------------------------------------------

    def _unary(self, name: str, request: Message, timeout: Timeout) -> Message:
        rpc = RPCS[name]
        seconds = resolve_timeout(timeout, self.timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        attempt = 0
        while True:
            attempt += 1
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                result, call = self._unary_calls[name].with_call(
                    request,
                    timeout=remaining,
                    metadata=_core.call_metadata(self._position.metadata(self._metadata)),
                    wait_for_ready=True,
                )
                self._position.note(call.initial_metadata())
                return cast(Message, result)
            except grpc.RpcError as e:
                err = BatonError.from_rpc_error(e)
                cause: BaseException = e
            wait = self._retry_wait(rpc, err, attempt, deadline)
            if wait is None:
                raise err from cause
            time.sleep(wait)

    def _retry_wait(self, rpc: _core.Rpc, err: BatonError, attempt: int, deadline: Optional[float]) -> Optional[float]:
        return _core.retry_wait(self.retry, rpc, err.status_code, err.retry_delay, attempt, deadline)

    def _stream(
        self,
        name: str,
        request: Q,
        timeout: Timeout,
        default_timeout: Optional[float],
        resume: Optional[Callable[[Q, Any], Optional[Q]]],
    ) -> Iterator[Any]:
        rpc = RPCS[name]
        seconds = resolve_timeout(timeout, default_timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        failures = 0
        delivered = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            call = self._stream_calls[name](
                request,
                timeout=remaining,
                metadata=_core.call_metadata(self._position.metadata(self._metadata)),
                wait_for_ready=True,
            )
            try:
                for item in call:
                    failures = 0
                    delivered += 1
                    if resume is not None:
                        next_request = resume(request, item)
                        yield item
                        if next_request is None:
                            return
                        request = next_request
                    else:
                        yield item
                return
            except grpc.RpcError as e:
                err = BatonError.from_rpc_error(e)
                cause: BaseException = e
            finally:
                call.cancel()
            failures += 1
            # A stream that cannot resume is retried only while it has delivered nothing.
            wait = None if resume is None and delivered else self._retry_wait(rpc, err, failures, deadline)
            if wait is None:
                raise err from cause
            time.sleep(wait)

    # --- ContextService -------------------------------------------------------------------

    def create_session(
        self, request: Optional[context_pb2.CreateSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Opens a new session owned by the calling agent (``CreateSession``).

        Fields: ``session_key`` (generated when empty), ``agent`` (required), ``metadata`` (dict),
        ``ttl`` (timedelta or seconds), ``idempotency_key``. Without an ``idempotency_key`` the
        call gets a fresh one, kept on every retry: a retry after a lost answer returns the
        session the first attempt created instead of opening a second one.
        """
        req = _core.keyed(_core.build_request(context_pb2.CreateSessionRequest, request, fields))
        return cast(common_pb2.Session, self._unary("CreateSession", req, timeout))

    def get_session(
        self, request: Optional[context_pb2.GetSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Returns one session (``GetSession``). Fields: ``session_key``."""
        req = _core.build_request(context_pb2.GetSessionRequest, request, fields)
        return cast(common_pb2.Session, self._unary("GetSession", req, timeout))

    def list_sessions(
        self, request: Optional[context_pb2.ListSessionsRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.ListSessionsResponse:
        """Lists sessions, newest first (``ListSessions``).

        Fields: ``agent``, ``status`` (e.g. ``"active"``), ``page_size``, ``page_token``.
        """
        req = _core.build_request(context_pb2.ListSessionsRequest, request, fields)
        return cast(context_pb2.ListSessionsResponse, self._unary("ListSessions", req, timeout))

    def update_session(
        self, request: Optional[context_pb2.UpdateSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Changes a session's metadata, status, time to live, legal hold or retention
        (``UpdateSession``).

        Fields: ``session_key``, ``metadata`` (dict), ``status`` (``"active"``, ``"dormant"``,
        ``"closed"``), ``ttl``, ``legal_hold`` (bool; admin keys only; while set the session
        cannot be deleted, compacted or redacted), ``retention`` (dict such as
        ``{"keep_latest": 100, "max_age": timedelta(days=30)}``; both bounds zero: the server's
        default). Unset fields are left unchanged.
        """
        req = _core.build_request(context_pb2.UpdateSessionRequest, request, fields)
        return cast(common_pb2.Session, self._unary("UpdateSession", req, timeout))

    def close_session(
        self, request: Optional[context_pb2.CloseSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Closes a session: it stays readable but takes no more entries (``CloseSession``)."""
        req = _core.build_request(context_pb2.CloseSessionRequest, request, fields)
        return cast(common_pb2.Session, self._unary("CloseSession", req, timeout))

    def append_entries(
        self, request: Optional[context_pb2.AppendEntriesRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.AppendEntriesResponse:
        """Appends a batch of entries atomically (``AppendEntries``).

        Fields: ``session_key``, ``entries`` (``NewEntry`` messages or dicts such as
        ``{"kind": "message", "role": "user", "author": "a", "text": "..."}``),
        ``idempotency_key``, ``expected_last_seq``. Without an ``idempotency_key`` the call gets
        a fresh one, kept on every retry, so the batch is stored once however often it is sent.
        """
        req = _core.build_request(context_pb2.AppendEntriesRequest, request, fields)
        _core.keyed(req)
        return cast(context_pb2.AppendEntriesResponse, self._unary("AppendEntries", req, timeout))

    def list_entries(
        self, request: Optional[context_pb2.ListEntriesRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.ListEntriesResponse:
        """Lists a session's entries in sequence order, one page at a time (``ListEntries``).

        Fields: ``session_key``, ``after_seq``, ``before_seq``, ``kinds`` (e.g. ``["message"]``),
        ``page_size``, ``page_token``.
        """
        req = _core.build_request(context_pb2.ListEntriesRequest, request, fields)
        return cast(context_pb2.ListEntriesResponse, self._unary("ListEntries", req, timeout))

    def stream_entries(
        self, request: Optional[context_pb2.StreamEntriesRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> Iterator[common_pb2.Entry]:
        """Iterates over a session's entries after ``after_seq``; with ``follow=True``, also over
        the entries appended later (``StreamEntries``).

        When the stream breaks (UNAVAILABLE: a server restart, a lost connection) the client
        reconnects and continues after the last entry it delivered, so every entry comes exactly
        once and in order. ``max_entries`` counts over the reconnections. A following stream has
        no deadline unless ``timeout=`` is given. Leaving the loop early cancels the stream.
        """
        req = _core.build_request(context_pb2.StreamEntriesRequest, request, fields)
        default = None if req.follow else self.timeout
        return cast(Iterator[common_pb2.Entry], self._stream("StreamEntries", req, timeout, default, resume_entries))

    def get_context_window(
        self, request: Optional[context_pb2.GetContextWindowRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.GetContextWindowResponse:
        """Returns the newest entries that fit a token budget, after the latest summary
        (``GetContextWindow``). Fields: ``session_key``, ``max_tokens``, ``max_entries``."""
        req = _core.build_request(context_pb2.GetContextWindowRequest, request, fields)
        return cast(context_pb2.GetContextWindowResponse, self._unary("GetContextWindow", req, timeout))

    def search_entries(
        self, request: Optional[context_pb2.SearchEntriesRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.SearchEntriesResponse:
        """Full-text search over entries' text, best matches first (``SearchEntries``).

        Fields: ``query``, ``session_key`` (empty: the whole tenant), ``page_size``, ``page_token``.
        """
        req = _core.build_request(context_pb2.SearchEntriesRequest, request, fields)
        return cast(context_pb2.SearchEntriesResponse, self._unary("SearchEntries", req, timeout))

    def delete_session(
        self, request: Optional[context_pb2.DeleteSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.DeleteSessionResponse:
        """Erases a session for good: its entries, handoffs and idempotency records
        (``DeleteSession``). Fields: ``session_key``.

        Returns ``deleted_entries``. Followers' streams end with NOT_FOUND. Refused with
        FAILED_PRECONDITION while the session is under legal hold. Not retried on UNAVAILABLE:
        after a lost answer the session may be gone already (a retry would be NOT_FOUND).
        """
        req = _core.build_request(context_pb2.DeleteSessionRequest, request, fields)
        return cast(context_pb2.DeleteSessionResponse, self._unary("DeleteSession", req, timeout))

    def fork_session(
        self, request: Optional[context_pb2.ForkSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Starts a new session whose entries 1..``at_seq`` are copies of another's
        (``ForkSession``).

        Fields: ``session_key`` (the source), ``at_seq`` (0: the source's newest),
        ``new_session_key`` (generated when empty), ``agent`` (owner of the fork, required). The
        fork's ``forked_from`` names the source and seq; handoffs are not copied. Like
        ``create_session``, it carries an ``idempotency_key`` (fresh unless given), so a retry
        returns the first fork instead of making a second.
        """
        req = _core.keyed(_core.build_request(context_pb2.ForkSessionRequest, request, fields))
        return cast(common_pb2.Session, self._unary("ForkSession", req, timeout))

    def redact_entries(
        self, request: Optional[context_pb2.RedactEntriesRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> context_pb2.RedactEntriesResponse:
        """Erases the content and metadata of entries, keeping their seq, kind, role, author and
        timestamps (``RedactEntries``).

        Fields: ``session_key``, ``seqs`` (list of seqs), ``reason``, ``agent`` (required),
        ``expected_last_seq`` (redact only while the session's newest seq is this one, else
        FAILED_PRECONDITION: retracts exactly the entry you appended last). Returns the entries
        as they read now, with ``redacted`` true and ``redaction`` saying who, when and why.
        """
        req = _core.build_request(context_pb2.RedactEntriesRequest, request, fields)
        return cast(context_pb2.RedactEntriesResponse, self._unary("RedactEntries", req, timeout))

    def compact_session(
        self, request: Optional[context_pb2.CompactSessionRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Session:
        """Removes the entries before ``before_seq`` (``CompactSession``); the session's
        ``first_seq`` moves to the oldest one kept, and reads below it fail with OUT_OF_RANGE.

        Fields: ``session_key``, ``before_seq``, ``force`` (also remove the newest SUMMARY
        entry; without it that is refused with FAILED_PRECONDITION).
        """
        req = _core.build_request(context_pb2.CompactSessionRequest, request, fields)
        return cast(common_pb2.Session, self._unary("CompactSession", req, timeout))

    # --- HandoffService -------------------------------------------------------------------

    def request_handoff(
        self, request: Optional[handoff_pb2.RequestHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """Asks another agent to take over or join the work on a session (``RequestHandoff``).

        Fields: ``session_key``, ``from_agent``, ``to_agent``, ``type`` (``"context_transfer"``,
        ``"full_handoff"``, ``"collaboration"``), ``instructions``, ``deadline`` (datetime),
        ``max_tokens``, ``idempotency_key``. Without an ``idempotency_key`` the call gets a fresh
        one, kept on every retry, so a retry returns the first handoff instead of a second.
        """
        req = _core.keyed(_core.build_request(handoff_pb2.RequestHandoffRequest, request, fields))
        return cast(common_pb2.Handoff, self._unary("RequestHandoff", req, timeout))

    def get_handoff(
        self, request: Optional[handoff_pb2.GetHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """Returns one handoff (``GetHandoff``). Fields: ``handoff_id``."""
        req = _core.build_request(handoff_pb2.GetHandoffRequest, request, fields)
        return cast(common_pb2.Handoff, self._unary("GetHandoff", req, timeout))

    def list_handoffs(
        self, request: Optional[handoff_pb2.ListHandoffsRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> handoff_pb2.ListHandoffsResponse:
        """Lists handoffs, newest first (``ListHandoffs``).

        Fields: ``to_agent``, ``from_agent``, ``session_key``, ``status`` (e.g. ``"pending"``),
        ``page_size``, ``page_token``.
        """
        req = _core.build_request(handoff_pb2.ListHandoffsRequest, request, fields)
        return cast(handoff_pb2.ListHandoffsResponse, self._unary("ListHandoffs", req, timeout))

    def accept_handoff(
        self, request: Optional[handoff_pb2.AcceptHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """The target agent takes a pending handoff (``AcceptHandoff``). Fields: ``handoff_id``, ``agent``."""
        req = _core.build_request(handoff_pb2.AcceptHandoffRequest, request, fields)
        return cast(common_pb2.Handoff, self._unary("AcceptHandoff", req, timeout))

    def reject_handoff(
        self, request: Optional[handoff_pb2.RejectHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """The target agent declines a pending handoff (``RejectHandoff``).

        Fields: ``handoff_id``, ``agent``, ``reason``.
        """
        req = _core.build_request(handoff_pb2.RejectHandoffRequest, request, fields)
        return cast(common_pb2.Handoff, self._unary("RejectHandoff", req, timeout))

    def complete_handoff(
        self, request: Optional[handoff_pb2.CompleteHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """The target agent marks an accepted handoff done (``CompleteHandoff``).

        Fields: ``handoff_id``, ``agent``.
        """
        req = _core.build_request(handoff_pb2.CompleteHandoffRequest, request, fields)
        return cast(common_pb2.Handoff, self._unary("CompleteHandoff", req, timeout))

    def cancel_handoff(
        self, request: Optional[handoff_pb2.CancelHandoffRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> common_pb2.Handoff:
        """The requesting agent withdraws a pending or accepted handoff (``CancelHandoff``).

        Fields: ``handoff_id``, ``agent``, ``reason``.
        """
        req = _core.build_request(handoff_pb2.CancelHandoffRequest, request, fields)
        return cast(common_pb2.Handoff, self._unary("CancelHandoff", req, timeout))

    def watch_handoffs(
        self, request: Optional[handoff_pb2.WatchHandoffsRequest] = None, *, timeout: Timeout = UNSET, **fields: Any
    ) -> Iterator[common_pb2.HandoffEvent]:
        """Iterates over an agent's handoff inbox, live (``WatchHandoffs``).

        Fields: ``agent``, ``after_cursor`` (resume after this event's cursor). When the stream
        breaks the client reconnects after the cursor of the last event it delivered, so every
        event comes exactly once. No deadline unless ``timeout=`` is given.
        """
        req = _core.build_request(handoff_pb2.WatchHandoffsRequest, request, fields)
        return cast(
            Iterator[common_pb2.HandoffEvent], self._stream("WatchHandoffs", req, timeout, None, resume_handoffs)
        )

    def stream_handoff_context(
        self,
        request: Optional[handoff_pb2.StreamHandoffContextRequest] = None,
        *,
        timeout: Timeout = UNSET,
        **fields: Any,
    ) -> Iterator[common_pb2.Entry]:
        """Iterates over a handoff's context package: the summary first, then the entries up to
        the handoff's ``up_to_seq`` (``StreamHandoffContext``). Fields: ``handoff_id``.

        Retried from the start only while nothing was delivered.
        """
        req = _core.build_request(handoff_pb2.StreamHandoffContextRequest, request, fields)
        return cast(Iterator[common_pb2.Entry], self._stream("StreamHandoffContext", req, timeout, self.timeout, None))
