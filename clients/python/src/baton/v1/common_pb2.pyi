from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_MESSAGE: _ClassVar[EntryKind]
    ENTRY_KIND_FILE: _ClassVar[EntryKind]
    ENTRY_KIND_TOOL_CALL: _ClassVar[EntryKind]
    ENTRY_KIND_TOOL_RESULT: _ClassVar[EntryKind]
    ENTRY_KIND_SYSTEM: _ClassVar[EntryKind]
    ENTRY_KIND_SUMMARY: _ClassVar[EntryKind]

class SessionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATUS_UNSPECIFIED: _ClassVar[SessionStatus]
    SESSION_STATUS_ACTIVE: _ClassVar[SessionStatus]
    SESSION_STATUS_DORMANT: _ClassVar[SessionStatus]
    SESSION_STATUS_HANDED_OFF: _ClassVar[SessionStatus]
    SESSION_STATUS_CLOSED: _ClassVar[SessionStatus]
    SESSION_STATUS_EXPIRED: _ClassVar[SessionStatus]

class HandoffType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_TYPE_UNSPECIFIED: _ClassVar[HandoffType]
    HANDOFF_TYPE_CONTEXT_TRANSFER: _ClassVar[HandoffType]
    HANDOFF_TYPE_FULL_HANDOFF: _ClassVar[HandoffType]
    HANDOFF_TYPE_COLLABORATION: _ClassVar[HandoffType]

class HandoffStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATUS_UNSPECIFIED: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_PENDING: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_ACCEPTED: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_REJECTED: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_COMPLETED: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_CANCELLED: _ClassVar[HandoffStatus]
    HANDOFF_STATUS_EXPIRED: _ClassVar[HandoffStatus]

class HandoffEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_EVENT_TYPE_UNSPECIFIED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_CREATED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_ACCEPTED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_REJECTED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_COMPLETED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_CANCELLED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_EXPIRED: _ClassVar[HandoffEventType]
    HANDOFF_EVENT_TYPE_DELETED: _ClassVar[HandoffEventType]
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_MESSAGE: EntryKind
ENTRY_KIND_FILE: EntryKind
ENTRY_KIND_TOOL_CALL: EntryKind
ENTRY_KIND_TOOL_RESULT: EntryKind
ENTRY_KIND_SYSTEM: EntryKind
ENTRY_KIND_SUMMARY: EntryKind
SESSION_STATUS_UNSPECIFIED: SessionStatus
SESSION_STATUS_ACTIVE: SessionStatus
SESSION_STATUS_DORMANT: SessionStatus
SESSION_STATUS_HANDED_OFF: SessionStatus
SESSION_STATUS_CLOSED: SessionStatus
SESSION_STATUS_EXPIRED: SessionStatus
HANDOFF_TYPE_UNSPECIFIED: HandoffType
HANDOFF_TYPE_CONTEXT_TRANSFER: HandoffType
HANDOFF_TYPE_FULL_HANDOFF: HandoffType
HANDOFF_TYPE_COLLABORATION: HandoffType
HANDOFF_STATUS_UNSPECIFIED: HandoffStatus
HANDOFF_STATUS_PENDING: HandoffStatus
HANDOFF_STATUS_ACCEPTED: HandoffStatus
HANDOFF_STATUS_REJECTED: HandoffStatus
HANDOFF_STATUS_COMPLETED: HandoffStatus
HANDOFF_STATUS_CANCELLED: HandoffStatus
HANDOFF_STATUS_EXPIRED: HandoffStatus
HANDOFF_EVENT_TYPE_UNSPECIFIED: HandoffEventType
HANDOFF_EVENT_TYPE_CREATED: HandoffEventType
HANDOFF_EVENT_TYPE_ACCEPTED: HandoffEventType
HANDOFF_EVENT_TYPE_REJECTED: HandoffEventType
HANDOFF_EVENT_TYPE_COMPLETED: HandoffEventType
HANDOFF_EVENT_TYPE_CANCELLED: HandoffEventType
HANDOFF_EVENT_TYPE_EXPIRED: HandoffEventType
HANDOFF_EVENT_TYPE_DELETED: HandoffEventType

class Session(_message.Message):
    __slots__ = ("session_key", "tenant", "created_by", "owner", "status", "metadata", "last_seq", "created_at", "updated_at", "last_activity_at", "expires_at", "forked_from", "first_seq", "legal_hold", "retention")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEGAL_HOLD_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    tenant: str
    created_by: str
    owner: str
    status: SessionStatus
    metadata: _struct_pb2.Struct
    last_seq: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    last_activity_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    forked_from: SessionRef
    first_seq: int
    legal_hold: bool
    retention: Retention
    def __init__(self, session_key: _Optional[str] = ..., tenant: _Optional[str] = ..., created_by: _Optional[str] = ..., owner: _Optional[str] = ..., status: _Optional[_Union[SessionStatus, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., last_seq: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., forked_from: _Optional[_Union[SessionRef, _Mapping]] = ..., first_seq: _Optional[int] = ..., legal_hold: bool = ..., retention: _Optional[_Union[Retention, _Mapping]] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("session_key", "seq")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    seq: int
    def __init__(self, session_key: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Retention(_message.Message):
    __slots__ = ("keep_latest", "max_age")
    KEEP_LATEST_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    keep_latest: int
    max_age: _duration_pb2.Duration
    def __init__(self, keep_latest: _Optional[int] = ..., max_age: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Redaction(_message.Message):
    __slots__ = ("redacted_by", "redacted_at", "reason")
    REDACTED_BY_FIELD_NUMBER: _ClassVar[int]
    REDACTED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    redacted_by: str
    redacted_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, redacted_by: _Optional[str] = ..., redacted_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("session_key", "seq", "kind", "role", "author", "text", "data", "media_type", "metadata", "token_count", "idempotency_key", "trace_id", "created_at", "redacted", "redaction")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    REDACTION_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    seq: int
    kind: EntryKind
    role: str
    author: str
    text: str
    data: bytes
    media_type: str
    metadata: _struct_pb2.Struct
    token_count: int
    idempotency_key: str
    trace_id: str
    created_at: _timestamp_pb2.Timestamp
    redacted: bool
    redaction: Redaction
    def __init__(self, session_key: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., role: _Optional[str] = ..., author: _Optional[str] = ..., text: _Optional[str] = ..., data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., token_count: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., trace_id: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., redacted: bool = ..., redaction: _Optional[_Union[Redaction, _Mapping]] = ...) -> None: ...

class NewEntry(_message.Message):
    __slots__ = ("kind", "role", "author", "text", "data", "media_type", "metadata")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    kind: EntryKind
    role: str
    author: str
    text: str
    data: bytes
    media_type: str
    metadata: _struct_pb2.Struct
    def __init__(self, kind: _Optional[_Union[EntryKind, str]] = ..., role: _Optional[str] = ..., author: _Optional[str] = ..., text: _Optional[str] = ..., data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("handoff_id", "session_key", "from_agent", "to_agent", "type", "status", "instructions", "summary", "up_to_seq", "created_at", "updated_at", "deadline", "reason", "max_tokens")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    session_key: str
    from_agent: str
    to_agent: str
    type: HandoffType
    status: HandoffStatus
    instructions: str
    summary: str
    up_to_seq: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    reason: str
    max_tokens: int
    def __init__(self, handoff_id: _Optional[str] = ..., session_key: _Optional[str] = ..., from_agent: _Optional[str] = ..., to_agent: _Optional[str] = ..., type: _Optional[_Union[HandoffType, str]] = ..., status: _Optional[_Union[HandoffStatus, str]] = ..., instructions: _Optional[str] = ..., summary: _Optional[str] = ..., up_to_seq: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class HandoffEvent(_message.Message):
    __slots__ = ("cursor", "type", "handoff")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    type: HandoffEventType
    handoff: Handoff
    def __init__(self, cursor: _Optional[int] = ..., type: _Optional[_Union[HandoffEventType, str]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...
