from baton.v1 import common_pb2 as _common_pb2
from baton.v1 import options_pb2 as _options_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_key", "agent", "metadata", "ttl", "idempotency_key")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    agent: str
    metadata: _struct_pb2.Struct
    ttl: _duration_pb2.Duration
    idempotency_key: str
    def __init__(self, session_key: _Optional[str] = ..., agent: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_key",)
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    def __init__(self, session_key: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("agent", "status", "page_size", "page_token")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agent: str
    status: _common_pb2.SessionStatus
    page_size: int
    page_token: str
    def __init__(self, agent: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.SessionStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_common_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("session_key", "metadata", "status", "ttl", "legal_hold", "retention")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    LEGAL_HOLD_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    metadata: _struct_pb2.Struct
    status: _common_pb2.SessionStatus
    ttl: _duration_pb2.Duration
    legal_hold: bool
    retention: _common_pb2.Retention
    def __init__(self, session_key: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.SessionStatus, str]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., legal_hold: bool = ..., retention: _Optional[_Union[_common_pb2.Retention, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_key",)
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    def __init__(self, session_key: _Optional[str] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ("deleted_entries",)
    DELETED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    deleted_entries: int
    def __init__(self, deleted_entries: _Optional[int] = ...) -> None: ...

class ForkSessionRequest(_message.Message):
    __slots__ = ("session_key", "at_seq", "new_session_key", "agent", "idempotency_key")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    AT_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEW_SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    at_seq: int
    new_session_key: str
    agent: str
    idempotency_key: str
    def __init__(self, session_key: _Optional[str] = ..., at_seq: _Optional[int] = ..., new_session_key: _Optional[str] = ..., agent: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RedactEntriesRequest(_message.Message):
    __slots__ = ("session_key", "seqs", "reason", "agent", "expected_last_seq")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    seqs: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    agent: str
    expected_last_seq: int
    def __init__(self, session_key: _Optional[str] = ..., seqs: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ..., agent: _Optional[str] = ..., expected_last_seq: _Optional[int] = ...) -> None: ...

class RedactEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ...) -> None: ...

class CompactSessionRequest(_message.Message):
    __slots__ = ("session_key", "before_seq", "force")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    before_seq: int
    force: bool
    def __init__(self, session_key: _Optional[str] = ..., before_seq: _Optional[int] = ..., force: bool = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_key",)
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    def __init__(self, session_key: _Optional[str] = ...) -> None: ...

class AppendEntriesRequest(_message.Message):
    __slots__ = ("session_key", "entries", "idempotency_key", "expected_last_seq")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.NewEntry]
    idempotency_key: str
    expected_last_seq: int
    def __init__(self, session_key: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.NewEntry, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., expected_last_seq: _Optional[int] = ...) -> None: ...

class AppendEntriesResponse(_message.Message):
    __slots__ = ("first_seq", "last_seq", "entries")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("session_key", "after_seq", "before_seq", "kinds", "page_size", "page_token")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    after_seq: int
    before_seq: int
    kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.EntryKind]
    page_size: int
    page_token: str
    def __init__(self, session_key: _Optional[str] = ..., after_seq: _Optional[int] = ..., before_seq: _Optional[int] = ..., kinds: _Optional[_Iterable[_Union[_common_pb2.EntryKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamEntriesRequest(_message.Message):
    __slots__ = ("session_key", "after_seq", "follow", "max_entries")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    after_seq: int
    follow: bool
    max_entries: int
    def __init__(self, session_key: _Optional[str] = ..., after_seq: _Optional[int] = ..., follow: bool = ..., max_entries: _Optional[int] = ...) -> None: ...

class GetContextWindowRequest(_message.Message):
    __slots__ = ("session_key", "max_tokens", "max_entries")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    max_tokens: int
    max_entries: int
    def __init__(self, session_key: _Optional[str] = ..., max_tokens: _Optional[int] = ..., max_entries: _Optional[int] = ...) -> None: ...

class GetContextWindowResponse(_message.Message):
    __slots__ = ("summary", "entries", "total_tokens", "last_seq", "truncated")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    summary: _common_pb2.Entry
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    total_tokens: int
    last_seq: int
    truncated: bool
    def __init__(self, summary: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ..., total_tokens: _Optional[int] = ..., last_seq: _Optional[int] = ..., truncated: bool = ...) -> None: ...

class SearchEntriesRequest(_message.Message):
    __slots__ = ("session_key", "query", "page_size", "page_token")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    query: str
    page_size: int
    page_token: str
    def __init__(self, session_key: _Optional[str] = ..., query: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("entry", "score", "snippet")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    score: float
    snippet: str
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., score: _Optional[float] = ..., snippet: _Optional[str] = ...) -> None: ...

class SearchEntriesResponse(_message.Message):
    __slots__ = ("hits", "next_page_token")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    next_page_token: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
