from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
MCP_TOOL_FIELD_NUMBER: _ClassVar[int]
mcp_tool: _descriptor.FieldDescriptor

class McpTool(_message.Message):
    __slots__ = ("name", "read_only", "aliases", "destructive")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DESTRUCTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    read_only: bool
    aliases: _containers.RepeatedScalarFieldContainer[str]
    destructive: bool
    def __init__(self, name: _Optional[str] = ..., read_only: bool = ..., aliases: _Optional[_Iterable[str]] = ..., destructive: bool = ...) -> None: ...
