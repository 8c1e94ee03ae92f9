from baton.v1 import common_pb2 as _common_pb2
from baton.v1 import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestHandoffRequest(_message.Message):
    __slots__ = ("session_key", "from_agent", "to_agent", "type", "instructions", "deadline", "max_tokens", "idempotency_key")
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    session_key: str
    from_agent: str
    to_agent: str
    type: _common_pb2.HandoffType
    instructions: str
    deadline: _timestamp_pb2.Timestamp
    max_tokens: int
    idempotency_key: str
    def __init__(self, session_key: _Optional[str] = ..., from_agent: _Optional[str] = ..., to_agent: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.HandoffType, str]] = ..., instructions: _Optional[str] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., max_tokens: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetHandoffRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...

class ListHandoffsRequest(_message.Message):
    __slots__ = ("to_agent", "from_agent", "session_key", "status", "page_size", "page_token")
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    to_agent: str
    from_agent: str
    session_key: str
    status: _common_pb2.HandoffStatus
    page_size: int
    page_token: str
    def __init__(self, to_agent: _Optional[str] = ..., from_agent: _Optional[str] = ..., session_key: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.HandoffStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHandoffsResponse(_message.Message):
    __slots__ = ("handoffs", "next_page_token")
    HANDOFFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    handoffs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Handoff]
    next_page_token: str
    def __init__(self, handoffs: _Optional[_Iterable[_Union[_common_pb2.Handoff, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcceptHandoffRequest(_message.Message):
    __slots__ = ("handoff_id", "agent")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    agent: str
    def __init__(self, handoff_id: _Optional[str] = ..., agent: _Optional[str] = ...) -> None: ...

class RejectHandoffRequest(_message.Message):
    __slots__ = ("handoff_id", "agent", "reason")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    agent: str
    reason: str
    def __init__(self, handoff_id: _Optional[str] = ..., agent: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CompleteHandoffRequest(_message.Message):
    __slots__ = ("handoff_id", "agent")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    agent: str
    def __init__(self, handoff_id: _Optional[str] = ..., agent: _Optional[str] = ...) -> None: ...

class CancelHandoffRequest(_message.Message):
    __slots__ = ("handoff_id", "agent", "reason")
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    agent: str
    reason: str
    def __init__(self, handoff_id: _Optional[str] = ..., agent: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchHandoffsRequest(_message.Message):
    __slots__ = ("agent", "after_cursor")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    agent: str
    after_cursor: int
    def __init__(self, agent: _Optional[str] = ..., after_cursor: _Optional[int] = ...) -> None: ...

class StreamHandoffContextRequest(_message.Message):
    __slots__ = ("handoff_id",)
    HANDOFF_ID_FIELD_NUMBER: _ClassVar[int]
    handoff_id: str
    def __init__(self, handoff_id: _Optional[str] = ...) -> None: ...
