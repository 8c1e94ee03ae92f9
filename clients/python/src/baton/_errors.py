"""The one error type of the client: :class:`BatonError`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

__all__ = ["BatonError", "FieldViolation"]

_DETAILS_KEY = "grpc-status-details-bin"


class FieldViolation(NamedTuple):
    """One invalid field of a request (from ``google.rpc.BadRequest``): a ``(field, description)`` pair."""

    field: str
    """Path of the field, e.g. ``"entries[0].author"``."""
    description: str
    """Why the field is invalid."""


class BatonError(Exception):
    """A failed Baton call.

    Every error a :class:`baton.Client` or :class:`baton.AsyncClient` raises for a failed RPC is
    a ``BatonError``, whatever the transport said.

    Attributes:
        code: The canonical gRPC code name, e.g. ``"NOT_FOUND"``, ``"INVALID_ARGUMENT"``,
            ``"UNAVAILABLE"``, ``"DEADLINE_EXCEEDED"``.
        message: The server's (or the transport's) message.
        field_violations: The ``google.rpc.BadRequest`` field violations, as
            :class:`FieldViolation` ``(field, description)`` pairs; empty when there are none.
        retry_delay: The ``google.rpc.RetryInfo`` delay the server asked for, if any.
        details: Every ``google.rpc`` detail message the status carried (``BadRequest``,
            ``ResourceInfo``, ``PreconditionFailure``, ``RetryInfo``, ``ErrorInfo``, ...), decoded.
        status_code: The :class:`grpc.StatusCode`.
    """

    code: str
    message: str
    field_violations: List[FieldViolation]
    retry_delay: Optional[timedelta]
    details: List[Any]
    status_code: grpc.StatusCode

    def __init__(
        self,
        status_code: grpc.StatusCode,
        message: str,
        *,
        field_violations: Sequence[Tuple[str, str]] = (),
        retry_delay: Optional[timedelta] = None,
        details: Sequence[Any] = (),
    ) -> None:
        self.status_code = status_code
        self.code = status_code.name
        self.message = message
        self.field_violations = [FieldViolation(f, d) for f, d in field_violations]
        self.retry_delay = retry_delay
        self.details = list(details)
        super().__init__(f"{self.code}: {message}")

    def __repr__(self) -> str:
        return f"BatonError(code={self.code!r}, message={self.message!r}, field_violations={self.field_violations!r})"

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> BatonError:
        """Builds a ``BatonError`` from a failed call of grpcio (sync or ``grpc.aio``)."""
        code_fn = getattr(err, "code", None)
        status_code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
        if not isinstance(status_code, grpc.StatusCode):
            status_code = grpc.StatusCode.UNKNOWN
        details_fn = getattr(err, "details", None)
        message = details_fn() if callable(details_fn) else str(err)
        trailers_fn = getattr(err, "trailing_metadata", None)
        trailers = trailers_fn() if callable(trailers_fn) else None
        return cls._from_parts(status_code, message or "", trailers)

    @classmethod
    def _from_parts(cls, status_code: grpc.StatusCode, message: str, trailers: Any) -> BatonError:
        violations: List[Tuple[str, str]] = []
        retry_delay: Optional[timedelta] = None
        decoded: List[Any] = []
        for key, value in trailers or ():
            if key != _DETAILS_KEY or not isinstance(value, bytes):
                continue
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the error itself
                continue
            for any_msg in status.details:
                msg = _unpack(any_msg)
                if msg is None:
                    continue
                decoded.append(msg)
                if isinstance(msg, error_details_pb2.BadRequest):
                    violations.extend((v.field, v.description) for v in msg.field_violations)
                elif isinstance(msg, error_details_pb2.RetryInfo) and msg.HasField("retry_delay"):
                    retry_delay = msg.retry_delay.ToTimedelta()
        return cls(status_code, message, field_violations=violations, retry_delay=retry_delay, details=decoded)


_DETAIL_TYPES = (
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ErrorInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RequestInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


def _unpack(any_msg: any_pb2.Any) -> Optional[Any]:
    for typ in _DETAIL_TYPES:
        desc: Any = typ.DESCRIPTOR
        if any_msg.Is(desc):
            msg = typ()
            if any_msg.Unpack(msg):
                return msg
    return None
