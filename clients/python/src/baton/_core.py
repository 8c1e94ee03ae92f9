"""What the sync and the async client share: targets, headers, request building and retries."""

from __future__ import annotations

import enum
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union

import grpc
from google.protobuf import descriptor, duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from baton.v1 import common_pb2, context_pb2, handoff_pb2

__all__ = ["RetryPolicy", "UNSET", "Timeout"]


class _Unset(enum.Enum):
    UNSET = 0

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
"""The ``timeout`` of a call that uses the client's default."""

Timeout = Union[float, None, _Unset]
"""A call's ``timeout``: seconds, None for no deadline, or UNSET for the client's default."""


def resolve_timeout(timeout: Timeout, default: Optional[float]) -> Optional[float]:
    """The seconds a call may take: ``timeout``, or ``default`` when it is UNSET."""
    if isinstance(timeout, _Unset):
        return default
    return timeout


TENANT_HEADER = "x-baton-tenant"
"""The request header that names the tenant."""

LSN_HEADER = "baton-lsn"
"""The response header with the server's log position after a write (or a read replica's read)."""

MIN_LSN_HEADER = "baton-min-lsn"
"""The request header with the highest log position the client has been told: a server with read
replicas serves the call's reads from one that has replayed that far (read-your-writes)."""

Metadata = Tuple[Tuple[str, str], ...]
M = TypeVar("M", bound=Message)

# How a method may be retried:
#   "safe"   reads; appends, session creates and forks, and handoff requests (which always
#            carry an idempotency key: a repeat returns the first call's result); and handoff
#            transitions (repeated on a handoff already there, they return it unchanged):
#            UNAVAILABLE and RESOURCE_EXHAUSTED (including a connection lost before the answer)
#            are retried.
#   "unsafe" other writes: a lost answer may hide a change that was made, so only
#            RESOURCE_EXHAUSTED (the server refused the call, nothing was done) is retried.
#            Calls wait for the connection (wait_for_ready), so a server that is down or
#            restarting is waited for rather than failed on, without any risk of a double write.
SAFE = "safe"
UNSAFE = "unsafe"

CONTEXT = "baton.v1.ContextService"
HANDOFF = "baton.v1.HandoffService"


@dataclass(frozen=True)
class Rpc:
    """One RPC: its full method path, message classes and retry class."""

    path: str
    request: Type[Message]
    response: Type[Message]
    retry: str


def _rpc(service: str, name: str, request: Type[Message], response: Type[Message], retry: str) -> Rpc:
    return Rpc(f"/{service}/{name}", request, response, retry)


RPCS: Dict[str, Rpc] = {
    "CreateSession": _rpc(CONTEXT, "CreateSession", context_pb2.CreateSessionRequest, common_pb2.Session, SAFE),
    "GetSession": _rpc(CONTEXT, "GetSession", context_pb2.GetSessionRequest, common_pb2.Session, SAFE),
    "ListSessions": _rpc(
        CONTEXT, "ListSessions", context_pb2.ListSessionsRequest, context_pb2.ListSessionsResponse, SAFE
    ),
    "UpdateSession": _rpc(CONTEXT, "UpdateSession", context_pb2.UpdateSessionRequest, common_pb2.Session, UNSAFE),
    "CloseSession": _rpc(CONTEXT, "CloseSession", context_pb2.CloseSessionRequest, common_pb2.Session, UNSAFE),
    "AppendEntries": _rpc(
        CONTEXT, "AppendEntries", context_pb2.AppendEntriesRequest, context_pb2.AppendEntriesResponse, SAFE
    ),
    "ListEntries": _rpc(CONTEXT, "ListEntries", context_pb2.ListEntriesRequest, context_pb2.ListEntriesResponse, SAFE),
    "StreamEntries": _rpc(CONTEXT, "StreamEntries", context_pb2.StreamEntriesRequest, common_pb2.Entry, SAFE),
    "GetContextWindow": _rpc(
        CONTEXT, "GetContextWindow", context_pb2.GetContextWindowRequest, context_pb2.GetContextWindowResponse, SAFE
    ),
    "SearchEntries": _rpc(
        CONTEXT, "SearchEntries", context_pb2.SearchEntriesRequest, context_pb2.SearchEntriesResponse, SAFE
    ),
    "DeleteSession": _rpc(
        CONTEXT, "DeleteSession", context_pb2.DeleteSessionRequest, context_pb2.DeleteSessionResponse, UNSAFE
    ),
    "ForkSession": _rpc(CONTEXT, "ForkSession", context_pb2.ForkSessionRequest, common_pb2.Session, SAFE),
    "RedactEntries": _rpc(
        CONTEXT, "RedactEntries", context_pb2.RedactEntriesRequest, context_pb2.RedactEntriesResponse, UNSAFE
    ),
    "CompactSession": _rpc(CONTEXT, "CompactSession", context_pb2.CompactSessionRequest, common_pb2.Session, UNSAFE),
    "RequestHandoff": _rpc(HANDOFF, "RequestHandoff", handoff_pb2.RequestHandoffRequest, common_pb2.Handoff, SAFE),
    "GetHandoff": _rpc(HANDOFF, "GetHandoff", handoff_pb2.GetHandoffRequest, common_pb2.Handoff, SAFE),
    "ListHandoffs": _rpc(
        HANDOFF, "ListHandoffs", handoff_pb2.ListHandoffsRequest, handoff_pb2.ListHandoffsResponse, SAFE
    ),
    "AcceptHandoff": _rpc(HANDOFF, "AcceptHandoff", handoff_pb2.AcceptHandoffRequest, common_pb2.Handoff, SAFE),
    "RejectHandoff": _rpc(HANDOFF, "RejectHandoff", handoff_pb2.RejectHandoffRequest, common_pb2.Handoff, SAFE),
    "CompleteHandoff": _rpc(HANDOFF, "CompleteHandoff", handoff_pb2.CompleteHandoffRequest, common_pb2.Handoff, SAFE),
    "CancelHandoff": _rpc(HANDOFF, "CancelHandoff", handoff_pb2.CancelHandoffRequest, common_pb2.Handoff, SAFE),
    "WatchHandoffs": _rpc(HANDOFF, "WatchHandoffs", handoff_pb2.WatchHandoffsRequest, common_pb2.HandoffEvent, SAFE),
    "StreamHandoffContext": _rpc(
        HANDOFF, "StreamHandoffContext", handoff_pb2.StreamHandoffContextRequest, common_pb2.Entry, SAFE
    ),
}

RETRYABLE_SAFE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
RETRYABLE_UNSAFE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})


def retry_wait(
    policy: RetryPolicy,
    rpc: Rpc,
    code: grpc.StatusCode,
    retry_delay: Optional[timedelta],
    attempt: int,
    deadline: Optional[float],
) -> Optional[float]:
    """Seconds to wait before retrying a failed attempt, or None when the failure is final:
    the code is not retryable for the RPC, the attempts are used up, or the wait would pass the
    deadline (a ``time.monotonic()`` value)."""
    if attempt >= policy.max_attempts or not retryable(rpc, code):
        return None
    wait = policy.backoff(attempt, retry_delay)
    if deadline is not None and time.monotonic() + wait >= deadline:
        return None
    return wait


def multicallables(channel: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The unary and the server-streaming multicallables of every RPC on ``channel`` (a
    ``grpc.Channel`` or a ``grpc.aio.Channel``), by RPC name."""
    unary: Dict[str, Any] = {}
    streams: Dict[str, Any] = {}
    for name, rpc in RPCS.items():
        if name in STREAMS:
            streams[name] = channel.unary_stream(
                rpc.path, request_serializer=serialize, response_deserializer=rpc.response.FromString
            )
        else:
            unary[name] = channel.unary_unary(
                rpc.path, request_serializer=serialize, response_deserializer=rpc.response.FromString
            )
    return unary, streams


def retryable(rpc: Rpc, code: grpc.StatusCode) -> bool:
    """Whether a failure with ``code`` may be retried for ``rpc``."""
    return code in (RETRYABLE_SAFE if rpc.retry == SAFE else RETRYABLE_UNSAFE)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried: exponential backoff with full jitter.

    The n-th retry waits a random time between 0 and ``min(max_backoff, initial_backoff *
    multiplier ** (n - 1))`` seconds, or at least the ``google.rpc.RetryInfo`` delay the server
    asked for. Reads, appends, creates (sessions, forks, handoffs) and handoff transitions retry
    UNAVAILABLE and RESOURCE_EXHAUSTED (a connection lost before the answer is UNAVAILABLE);
    other writes retry RESOURCE_EXHAUSTED only. An append or a create keeps its idempotency key
    on every attempt, so a retry never writes twice; a transition repeated after it was made
    returns the handoff unchanged.

    Attributes:
        max_attempts: Attempts of one call in all, the first included (1 disables retries). For
            the resumable streams it is the number of reconnections in a row that may fail
            without delivering anything.
        initial_backoff: Upper bound of the first wait, in seconds.
        max_backoff: Upper bound of any wait, in seconds.
        multiplier: Growth of the bound per attempt.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def backoff(self, retry: int, retry_delay: Optional[timedelta] = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        bound = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, retry - 1))
        wait = random.uniform(0, bound)
        if retry_delay is not None:
            wait = max(wait, retry_delay.total_seconds())
        return wait


def parse_target(
    target: str, tls: Union[bool, grpc.ChannelCredentials]
) -> Tuple[str, Union[bool, grpc.ChannelCredentials]]:
    """Strips an ``http://`` or ``https://`` prefix (``https`` turns TLS on) and a trailing slash."""
    if target.startswith("https://"):
        target = target[len("https://") :]
        if tls is False:
            tls = True
    elif target.startswith("http://"):
        target = target[len("http://") :]
    return target.rstrip("/"), tls


def credentials(tls: Union[bool, grpc.ChannelCredentials]) -> Optional[grpc.ChannelCredentials]:
    """Channel credentials for ``tls``: None for plaintext, the system roots for True."""
    if tls is True:
        return grpc.ssl_channel_credentials()
    if tls is False or tls is None:
        return None
    return tls


# Reconnect quickly after a server restart (grpc's default backoff grows to two minutes), and
# notice a dead connection under a long-lived stream.
CHANNEL_OPTIONS: List[Tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def base_metadata(tenant: Optional[str], api_key: Optional[str]) -> Metadata:
    """The headers sent with every call: tenant and API key."""
    md: List[Tuple[str, str]] = []
    if tenant:
        md.append((TENANT_HEADER, tenant))
    if api_key:
        md.append(("authorization", f"Bearer {api_key}"))
    return tuple(md)


class LogPosition:
    """The highest log position (``baton-lsn``) a client's calls were answered with, shared by
    all of its calls (threads or tasks): 16 upper-case hexadecimal digits, so the highest is the
    greatest string."""

    def __init__(self, initial: Optional[str]) -> None:
        self._lock = threading.Lock()
        self._value: Optional[str] = None
        if initial is not None:
            self._value = normalize_position(initial)
            if self._value is None:
                raise ValueError(
                    f"log_position must be a log position as baton-lsn gives it (1 to 16 hexadecimal digits), "
                    f"got {initial!r}"
                )

    @property
    def value(self) -> Optional[str]:
        return self._value

    def note(self, metadata: Optional[Any]) -> None:
        """Keeps the ``baton-lsn`` of a call's response headers if it is higher."""
        for key, told in metadata or ():
            if key != LSN_HEADER:
                continue
            position = normalize_position(told if isinstance(told, str) else told.decode("ascii", "replace"))
            if position is None:
                continue
            with self._lock:
                if self._value is None or position > self._value:
                    self._value = position

    def metadata(self, base: Metadata) -> Metadata:
        """``base`` plus ``baton-min-lsn`` once the client has a position."""
        value = self._value
        return base if value is None else base + ((MIN_LSN_HEADER, value),)


class PositionTracking:
    """The ``log_position`` of both clients."""

    _position: LogPosition

    @property
    def log_position(self) -> Optional[str]:
        """The highest log position the server has told this client of (the ``baton-lsn``
        response header: 16 hexadecimal digits), or None before the first write to a server
        with read replicas. Every call sends it back as ``baton-min-lsn``, so reads served by a
        read replica reflect this client's own writes; a client of another process started with
        ``log_position=`` this value reads them too."""
        return self._position.value


def normalize_position(text: str) -> Optional[str]:
    """A log position in its 16-digit upper-case form, or None when ``text`` is not one."""
    if not 1 <= len(text) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return text.upper().rjust(16, "0")


def call_metadata(base: Metadata) -> Metadata:
    """``base`` plus the W3C trace context of the current OpenTelemetry span, when OpenTelemetry is installed."""
    carrier = _trace_context()
    if not carrier:
        return base
    return base + tuple((k.lower(), v) for k, v in carrier.items())


def _trace_context() -> Dict[str, str]:
    try:
        from opentelemetry import propagate
    except ImportError:
        return {}
    carrier: Dict[str, str] = {}
    try:
        propagate.inject(carrier)
    except Exception:  # a misconfigured propagator must not fail the call
        return {}
    return carrier


def new_idempotency_key() -> str:
    """A fresh idempotency key for an append or a create."""
    return uuid.uuid4().hex


def keyed(req: M) -> M:
    """``req`` with a fresh idempotency key unless the caller gave one; every retry of the call
    sends that same key, so the server acts once."""
    message: Any = req
    if not message.idempotency_key:
        message.idempotency_key = new_idempotency_key()
    return req


# --- building requests from keyword arguments ---------------------------------------------


def build_request(cls: Type[M], request: Optional[M], fields: Mapping[str, Any]) -> M:
    """The request message: ``request`` (copied) or a new ``cls``, with ``fields`` set on it.

    Keyword values are converted to the field's type: enum fields take the short lower-case name
    (``kind="message"``), the full name or the number; message fields take a message or a dict;
    ``google.protobuf.Struct`` takes a dict; ``Duration`` takes a :class:`datetime.timedelta` or
    seconds; ``Timestamp`` takes a :class:`datetime.datetime`; repeated fields take any iterable.
    """
    if request is not None and not isinstance(request, cls):
        raise TypeError(f"request must be a {cls.DESCRIPTOR.full_name}, not {type(request).__name__}")
    msg = cls()
    if request is not None:
        msg.CopyFrom(request)
    set_fields(msg, fields)
    return msg


def set_fields(msg: Message, fields: Mapping[str, Any]) -> None:
    """Sets ``fields`` on ``msg`` with the conversions of :func:`build_request`."""
    desc = msg.DESCRIPTOR
    for name, value in fields.items():
        fd = desc.fields_by_name.get(name)
        if fd is None:
            known = ", ".join(sorted(desc.fields_by_name))
            raise TypeError(f"{desc.full_name} has no field {name!r} (fields: {known})")
        if value is None:
            msg.ClearField(name)
            continue
        if _is_repeated(fd):
            container = getattr(msg, name)
            del container[:]
            if fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    _assign_message(container.add(), item)
            else:
                container.extend(_scalar(fd, item) for item in value)
        elif fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            _assign_message(getattr(msg, name), value)
        else:
            setattr(msg, name, _scalar(fd, value))


def _is_repeated(fd: Any) -> bool:
    # protobuf >= 6.31 has the is_repeated attribute and deprecates label; older ones only label.
    rep = getattr(fd, "is_repeated", None)
    if isinstance(rep, bool):
        return rep
    return bool(fd.label == descriptor.FieldDescriptor.LABEL_REPEATED)


def _assign_message(target: Message, value: Any) -> None:
    full = target.DESCRIPTOR.full_name
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != full:
            raise TypeError(f"expected a {full}, got a {value.DESCRIPTOR.full_name}")
        target.CopyFrom(value)
    elif full == "google.protobuf.Struct" and isinstance(value, Mapping):
        assert isinstance(target, struct_pb2.Struct)
        target.Clear()
        target.update(dict(value))
    elif full == "google.protobuf.Duration" and isinstance(value, (timedelta, int, float)):
        assert isinstance(target, duration_pb2.Duration)
        target.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    elif full == "google.protobuf.Timestamp" and isinstance(value, datetime):
        assert isinstance(target, timestamp_pb2.Timestamp)
        target.FromDatetime(value)
    elif isinstance(value, Mapping):
        target.Clear()
        set_fields(target, value)
    else:
        raise TypeError(f"cannot make a {full} from {type(value).__name__}")


def _scalar(fd: Any, value: Any) -> Any:
    if fd.type == descriptor.FieldDescriptor.TYPE_ENUM:
        return enum_value(fd.enum_type, value)
    return value


def enum_value(enum: Any, value: Any) -> int:
    """The number of an enum value given by short name (``"message"``), full name or number."""
    if isinstance(value, bool):
        raise TypeError(f"{enum.full_name} takes a name or a number, not a bool")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{enum.full_name} takes a name or a number, not {type(value).__name__}")
    by_name = enum.values_by_name
    if value in by_name:
        return int(by_name[value].number)
    prefix = enum_prefix(enum)
    full = prefix + value.upper().replace("-", "_")
    if full in by_name:
        return int(by_name[full].number)
    names = ", ".join(short_name(enum, v.number) for v in enum.values if v.number != 0)
    raise ValueError(f"{value!r} is not a {enum.name} (one of: {names})")


def enum_prefix(enum: Any) -> str:
    """The prefix of an enum's value names, e.g. ``"ENTRY_KIND_"``."""
    zero = str(enum.values_by_number[0].name)
    return zero[: -len("UNSPECIFIED")] if zero.endswith("UNSPECIFIED") else ""


def short_name(enum: Any, number: int) -> str:
    """The short lower-case name of an enum value, e.g. ``"message"`` for ENTRY_KIND_MESSAGE."""
    name = str(enum.values_by_number[number].name)
    return name[len(enum_prefix(enum)) :].lower()


STREAMS = frozenset({"StreamEntries", "WatchHandoffs", "StreamHandoffContext"})


def serialize(msg: Message) -> bytes:
    """Encodes a request message."""
    return msg.SerializeToString()


def resume_entries(req: context_pb2.StreamEntriesRequest, entry: Any) -> Optional[context_pb2.StreamEntriesRequest]:
    """The request that continues ``req`` after ``entry``; None when ``max_entries`` is used up."""
    nxt = context_pb2.StreamEntriesRequest()
    nxt.CopyFrom(req)
    nxt.after_seq = entry.seq
    if req.max_entries:
        if req.max_entries <= 1:
            return None
        nxt.max_entries = req.max_entries - 1
    return nxt


def resume_handoffs(req: handoff_pb2.WatchHandoffsRequest, event: Any) -> handoff_pb2.WatchHandoffsRequest:
    """The request that continues ``req`` after ``event``."""
    nxt = handoff_pb2.WatchHandoffsRequest()
    nxt.CopyFrom(req)
    nxt.after_cursor = event.cursor
    return nxt
