"""The synchronous client against a real batond: every RPC, errors, retries, resumable streams,
deadlines, headers."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent import futures
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Tuple

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

import baton
from baton.v1 import common_pb2, context_pb2, context_pb2_grpc, handoff_pb2
from conftest import Batond, DropProxy, free_port, run_in_thread, wait_for


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def msg(author: str, text: str, kind: str = "message") -> Dict[str, Any]:
    return {"kind": kind, "role": "assistant", "author": author, "text": text}


def test_the_installed_wheel_is_tested() -> None:
    # The part installs the built wheel into a venv and runs the tests from outside the source
    # tree: the package must come from site-packages, not from clients/python/src.
    assert "site-packages" in str(Path(baton.__file__).resolve()), baton.__file__
    assert baton.v1.common_pb2.Entry.DESCRIPTOR.full_name == "baton.v1.Entry"


def test_a_method_per_rpc_of_the_protos() -> None:
    # A new RPC in proto/ must get a method on both clients (this fails until it does).
    import re

    for service in (
        context_pb2.DESCRIPTOR.services_by_name["ContextService"],
        handoff_pb2.DESCRIPTOR.services_by_name["HandoffService"],
    ):
        for method in service.methods:
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", method.name).lower()
            assert callable(getattr(baton.Client, name, None)), f"Client.{name} for {method.full_name}"
            assert callable(getattr(baton.AsyncClient, name, None)), f"AsyncClient.{name} for {method.full_name}"
            assert getattr(baton.Client, name).__doc__, f"Client.{name} has a docstring"


def test_every_rpc(server: Batond) -> None:
    a, b = key("planner"), key("coder")
    with baton.Client(server.target, tenant="py-sync") as c:
        # ContextService
        s = c.create_session(agent=a, metadata={"project": "demo"}, ttl=timedelta(hours=1))
        assert s.owner == a and s.status == common_pb2.SESSION_STATUS_ACTIVE
        assert s.metadata["project"] == "demo" and s.HasField("expires_at")
        assert s.tenant == "py-sync"
        got = c.get_session(session_key=s.session_key)
        assert got.session_key == s.session_key
        listed = c.list_sessions(agent=a, status="active")
        assert [x.session_key for x in listed.sessions] == [s.session_key]
        updated = c.update_session(session_key=s.session_key, metadata={"project": "demo", "step": 2})
        assert updated.metadata["step"] == 2
        r = c.append_entries(
            session_key=s.session_key,
            entries=[msg(a, "plan the parser"), msg(a, "lexer first", "system"), msg(a, "then the grammar")],
        )
        assert (r.first_seq, r.last_seq) == (1, 3)
        assert r.entries[0].idempotency_key, "an automatic idempotency key is sent"
        assert r.entries[1].kind == common_pb2.ENTRY_KIND_SYSTEM
        page = c.list_entries(session_key=s.session_key, kinds=["message"])
        assert [e.seq for e in page.entries] == [1, 3]
        page = c.list_entries(context_pb2.ListEntriesRequest(session_key=s.session_key), after_seq=1, page_size=1)
        assert [e.seq for e in page.entries] == [2] and page.next_page_token
        assert [e.seq for e in c.stream_entries(session_key=s.session_key)] == [1, 2, 3]
        assert [e.seq for e in c.stream_entries(session_key=s.session_key, after_seq=1, max_entries=1)] == [2]
        window = c.get_context_window(session_key=s.session_key, max_tokens=8192)
        assert window.last_seq == 3 and [e.seq for e in window.entries] == [1, 2, 3]
        hits = c.search_entries(session_key=s.session_key, query="grammar")
        assert [h.entry.seq for h in hits.hits] == [3] and "[grammar]" in hits.hits[0].snippet

        # HandoffService
        h = c.request_handoff(
            session_key=s.session_key, from_agent=a, to_agent=b, type="full_handoff", instructions="write the lexer"
        )
        assert h.status == common_pb2.HANDOFF_STATUS_PENDING and h.up_to_seq == 3
        assert c.get_handoff(handoff_id=h.handoff_id).instructions == "write the lexer"
        inbox = c.list_handoffs(to_agent=b, status="pending")
        assert [x.handoff_id for x in inbox.handoffs] == [h.handoff_id]
        events = []
        for ev in c.watch_handoffs(agent=b, timeout=10):
            events.append(ev)
            break
        assert events[0].handoff.handoff_id == h.handoff_id and events[0].cursor > 0
        accepted = c.accept_handoff(handoff_id=h.handoff_id, agent=b)
        assert accepted.status == common_pb2.HANDOFF_STATUS_ACCEPTED
        assert c.get_session(session_key=s.session_key).owner == b
        package = list(c.stream_handoff_context(handoff_id=h.handoff_id))
        assert [e.seq for e in package if e.kind != common_pb2.ENTRY_KIND_SUMMARY][-3:] == [1, 2, 3]
        done = c.complete_handoff(handoff_id=h.handoff_id, agent=b)
        assert done.status == common_pb2.HANDOFF_STATUS_COMPLETED

        h2 = c.request_handoff(session_key=s.session_key, from_agent=b, to_agent=a, type="collaboration")
        rejected = c.reject_handoff(handoff_id=h2.handoff_id, agent=a, reason="busy")
        assert rejected.status == common_pb2.HANDOFF_STATUS_REJECTED and rejected.reason == "busy"
        h3 = c.request_handoff(session_key=s.session_key, from_agent=b, to_agent=a, type="context_transfer")
        cancelled = c.cancel_handoff(handoff_id=h3.handoff_id, agent=b, reason="not needed")
        assert cancelled.status == common_pb2.HANDOFF_STATUS_CANCELLED

        closed = c.close_session(session_key=s.session_key)
        assert closed.status == common_pb2.SESSION_STATUS_CLOSED


def test_request_message_and_keywords(server: Batond) -> None:
    with baton.Client(f"http://{server.target}") as c:
        s = c.create_session(context_pb2.CreateSessionRequest(agent="a", ttl=duration_pb2.Duration(seconds=60)))
        r = c.append_entries(
            context_pb2.AppendEntriesRequest(session_key=s.session_key, idempotency_key="k1"),
            entries=[
                common_pb2.NewEntry(
                    kind=common_pb2.ENTRY_KIND_FILE, author="a", data=b"\x00\x01", media_type="application/octet-stream"
                )
            ],
        )
        assert r.entries[0].idempotency_key == "k1" and r.entries[0].data == b"\x00\x01"
        again = c.append_entries(session_key=s.session_key, idempotency_key="k1", entries=[msg("a", "other")])
        assert again.first_seq == r.first_seq, "the same key returns the first append's result"
        with pytest.raises(ValueError, match="not a EntryKind"):
            c.append_entries(session_key=s.session_key, entries=[msg("a", "x", kind="poem")])
        with pytest.raises(TypeError, match="no field 'sesion_key'"):
            c.get_session(sesion_key=s.session_key)


def test_not_found(server: Batond) -> None:
    with baton.Client(server.target) as c:
        with pytest.raises(baton.BatonError) as ei:
            c.get_session(session_key=key("missing"))
        err = ei.value
        assert err.code == "NOT_FOUND" and err.status_code == grpc.StatusCode.NOT_FOUND
        assert "not found" in err.message and err.field_violations == []
        info = [d for d in err.details if isinstance(d, error_details_pb2.ResourceInfo)]
        assert info and info[0].resource_type == "session"
        with pytest.raises(baton.BatonError) as ei:
            c.accept_handoff(handoff_id=key("nohandoff"), agent="x")
        assert ei.value.code == "NOT_FOUND"


def test_invalid_argument_has_field_violations(server: Batond) -> None:
    with baton.Client(server.target) as c:
        s = c.create_session(agent="a")
        with pytest.raises(baton.BatonError) as ei:
            c.append_entries(session_key=s.session_key, entries=[{"text": "no kind, no author"}])
        err = ei.value
        assert err.code == "INVALID_ARGUMENT"
        fields = dict(err.field_violations)
        assert "entries[0].author" in fields and "entries[0].kind" in fields
        assert all(isinstance(v, tuple) and len(v) == 2 for v in err.field_violations)
        assert err.field_violations[0].field == err.field_violations[0][0]
        # Nothing was written.
        assert c.get_session(session_key=s.session_key).last_seq == 0


def test_tenants_are_separate(server: Batond) -> None:
    with baton.Client(server.target, tenant="t-one") as one, baton.Client(server.target, tenant="t-two") as two:
        s = one.create_session(agent="a")
        assert one.get_session(session_key=s.session_key).tenant == "t-one"
        with pytest.raises(baton.BatonError) as ei:
            two.get_session(session_key=s.session_key)
        assert ei.value.code == "NOT_FOUND"


def test_append_retried_after_lost_answer_is_stored_once(server: Batond, drop_proxy: DropProxy) -> None:
    direct = baton.Client(server.target)
    s = direct.create_session(agent="a")
    with baton.Client(drop_proxy.target) as c:
        assert c.get_session(session_key=s.session_key).last_seq == 0  # the connection is up
        drop_proxy.arm(lambda: direct.get_session(session_key=s.session_key).last_seq >= 2)
        r = c.append_entries(session_key=s.session_key, entries=[msg("a", "one"), msg("a", "two")])
        assert drop_proxy.dropped == 1, "the proxy dropped the first answer"
        assert drop_proxy.connections >= 2, "the retry went over a new connection"
    assert (r.first_seq, r.last_seq) == (1, 2)
    entries = direct.list_entries(session_key=s.session_key).entries
    assert [e.text for e in entries] == ["one", "two"], "stored once"
    assert direct.get_session(session_key=s.session_key).last_seq == 2
    direct.close()


def test_creates_retried_after_lost_answers_create_once(server: Batond, drop_proxy: DropProxy) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    direct = baton.Client(server.target, tenant=tenant)

    def sessions() -> List[common_pb2.Session]:
        return list(direct.list_sessions().sessions)

    with baton.Client(drop_proxy.target, tenant=tenant) as c:
        c.list_sessions()  # the connection is up
        drop_proxy.arm(lambda: len(sessions()) == 1)
        s = c.create_session(agent="a")
        assert drop_proxy.dropped == 1, "the proxy dropped the first answer"
        direct.append_entries(session_key=s.session_key, entries=[msg("a", "one")])

        drop_proxy.arm(lambda: len(sessions()) == 2)
        fork = c.fork_session(session_key=s.session_key, agent="b")
        assert drop_proxy.dropped == 2
        assert (fork.forked_from.session_key, fork.last_seq) == (s.session_key, 1)

        drop_proxy.arm(lambda: len(direct.list_handoffs(session_key=s.session_key).handoffs) == 1)
        h = c.request_handoff(session_key=s.session_key, from_agent="a", to_agent="b", type="context_transfer")
        assert drop_proxy.dropped == 3

        accepted = common_pb2.HANDOFF_STATUS_ACCEPTED
        drop_proxy.arm(lambda: direct.get_handoff(handoff_id=h.handoff_id).status == accepted)
        assert c.accept_handoff(handoff_id=h.handoff_id, agent="b").status == accepted
        assert drop_proxy.dropped == 4
    assert sorted(x.session_key for x in sessions()) == sorted([s.session_key, fork.session_key]), "one of each"
    assert [x.handoff_id for x in direct.list_handoffs(session_key=s.session_key).handoffs] == [h.handoff_id]
    direct.close()


def test_lost_answer_of_an_unsafe_write_is_raised(server: Batond, drop_proxy: DropProxy) -> None:
    direct = baton.Client(server.target)
    s = direct.create_session(agent="a")
    with baton.Client(drop_proxy.target) as c:
        c.get_session(session_key=s.session_key)
        drop_proxy.arm(lambda: direct.get_session(session_key=s.session_key).status == common_pb2.SESSION_STATUS_CLOSED)
        with pytest.raises(baton.BatonError) as ei:
            c.close_session(session_key=s.session_key)
        assert ei.value.code == "UNAVAILABLE"
    direct.close()


def test_follow_stream_survives_restart(own_server: Batond) -> None:
    n = 10
    writer = baton.Client(own_server.target)
    s = writer.create_session(agent="a")
    for i in range(1, 6):
        writer.append_entries(session_key=s.session_key, entries=[msg("a", f"entry {i}")])
    seen: List[int] = []
    errors: List[BaseException] = []

    def follow() -> None:
        try:
            with baton.Client(own_server.target) as reader:
                for e in reader.stream_entries(session_key=s.session_key, follow=True, timeout=90):
                    seen.append(e.seq)
                    if len(seen) == n:
                        return
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    t = run_in_thread(follow)
    wait_for(lambda: len(seen) == 5 or bool(errors), what="the first five entries")
    own_server.restart()
    for i in range(6, n + 1):
        writer.append_entries(session_key=s.session_key, entries=[msg("a", f"entry {i}")])
    t.join(timeout=90)
    writer.close()
    assert not errors, errors
    assert seen == list(range(1, n + 1))


def test_watch_handoffs_resumes_by_cursor_after_restart(own_server: Batond) -> None:
    a, b = key("a"), key("b")
    c = baton.Client(own_server.target)
    s = c.create_session(agent=a)
    c.append_entries(session_key=s.session_key, entries=[msg(a, "context")])
    first = c.request_handoff(session_key=s.session_key, from_agent=a, to_agent=b, type="collaboration")
    events: List[Tuple[int, int, str]] = []
    errors: List[BaseException] = []

    def watch() -> None:
        try:
            with baton.Client(own_server.target) as w:
                for ev in w.watch_handoffs(agent=b, timeout=90):
                    events.append((ev.cursor, ev.type, ev.handoff.handoff_id))
                    if len(events) == 3:
                        return
        except BaseException as exc:
            errors.append(exc)

    t = run_in_thread(watch)
    wait_for(lambda: len(events) == 1 or bool(errors), what="the first handoff event")
    own_server.restart()
    second = c.request_handoff(session_key=s.session_key, from_agent=a, to_agent=b, type="context_transfer")
    c.accept_handoff(handoff_id=first.handoff_id, agent=b)
    t.join(timeout=90)
    c.close()
    assert not errors, errors
    cursors = [e[0] for e in events]
    assert cursors == sorted(set(cursors)), f"each event once, in order: {events}"
    assert [(e[1], e[2]) for e in events] == [
        (common_pb2.HANDOFF_EVENT_TYPE_CREATED, first.handoff_id),
        (common_pb2.HANDOFF_EVENT_TYPE_CREATED, second.handoff_id),
        (common_pb2.HANDOFF_EVENT_TYPE_ACCEPTED, first.handoff_id),
    ]


def test_deadline_exceeded_is_a_baton_error(server: Batond) -> None:
    with baton.Client(server.target) as c:
        s = c.create_session(agent="a")
        start = time.monotonic()
        with pytest.raises(baton.BatonError) as ei:
            for _ in c.stream_entries(session_key=s.session_key, follow=True, timeout=0.5):
                pass
        assert ei.value.code == "DEADLINE_EXCEEDED"
        assert 0.4 < time.monotonic() - start < 5
    # A server that is not there: calls wait for it until the client's default deadline.
    with baton.Client(f"127.0.0.1:{free_port()}", timeout=0.5) as c:
        start = time.monotonic()
        with pytest.raises(baton.BatonError) as ei:
            c.get_session(session_key="x")
        assert ei.value.code in ("DEADLINE_EXCEEDED", "UNAVAILABLE")
        assert time.monotonic() - start < 5


# --- headers and retry rules, against an in-process gRPC server that records what it got ---


class Recorder(context_pb2_grpc.ContextServiceServicer):
    """Answers GetSession, AppendEntries, CreateSession and CloseSession from a script of status
    codes, recording calls."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Dict[str, str], Any]] = []
        self.script: List[Tuple[grpc.StatusCode, float]] = []
        self.lock = threading.Lock()

    def _answer(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((name, dict(context.invocation_metadata()), request))
            step = self.script.pop(0) if self.script else None
        if step is not None:
            code, delay = step
            details = []
            if delay:
                info = error_details_pb2.RetryInfo()
                info.retry_delay.FromTimedelta(timedelta(seconds=delay))
                details.append(info)
            st = status_pb2.Status(code=code.value[0], message=f"scripted {code.name}")
            for d in details:
                st.details.add().Pack(d)
            context.abort_with_status(_RichStatus(code, st))

    def GetSession(self, request: Any, context: grpc.ServicerContext) -> common_pb2.Session:
        self._answer("GetSession", request, context)
        return common_pb2.Session(session_key=request.session_key)

    def AppendEntries(self, request: Any, context: grpc.ServicerContext) -> context_pb2.AppendEntriesResponse:
        self._answer("AppendEntries", request, context)
        return context_pb2.AppendEntriesResponse(first_seq=1, last_seq=1)

    def CreateSession(self, request: Any, context: grpc.ServicerContext) -> common_pb2.Session:
        self._answer("CreateSession", request, context)
        return common_pb2.Session(session_key="new")

    def CloseSession(self, request: Any, context: grpc.ServicerContext) -> common_pb2.Session:
        self._answer("CloseSession", request, context)
        return common_pb2.Session(session_key=request.session_key)


class _RichStatus(grpc.Status):
    def __init__(self, code: grpc.StatusCode, st: status_pb2.Status) -> None:
        self.code = code
        self.details = st.message
        self.trailing_metadata = (("grpc-status-details-bin", st.SerializeToString()),)


@pytest.fixture()
def recorder() -> Any:
    rec = Recorder()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    context_pb2_grpc.add_ContextServiceServicer_to_server(rec, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    rec.target = f"127.0.0.1:{port}"
    yield rec
    srv.stop(None)


def test_headers_tenant_api_key_and_trace_context(recorder: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    with baton.Client(recorder.target, tenant="acme", api_key="s3cret") as c:
        c.get_session(session_key="k")
        ctx = SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=False,
            trace_flags=TraceFlags(1),
        )
        with trace.use_span(NonRecordingSpan(ctx)):
            c.get_session(session_key="k")
    (_, md1, _), (_, md2, _) = recorder.calls
    assert md1["x-baton-tenant"] == "acme" and md1["authorization"] == "Bearer s3cret"
    assert "traceparent" not in md1
    assert md2["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_retries_honour_retry_info_and_keep_the_key(recorder: Any) -> None:
    recorder.script = [(grpc.StatusCode.UNAVAILABLE, 0.3), (grpc.StatusCode.RESOURCE_EXHAUSTED, 0.0)]
    with baton.Client(recorder.target, retry=baton.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)) as c:
        start = time.monotonic()
        c.append_entries(session_key="k", entries=[msg("a", "x")])
        elapsed = time.monotonic() - start
    keys = [req.idempotency_key for name, _, req in recorder.calls]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1, keys
    assert elapsed >= 0.3, "the RetryInfo delay was waited for"


def test_other_codes_and_unsafe_writes_are_not_retried(recorder: Any) -> None:
    recorder.script = [(grpc.StatusCode.FAILED_PRECONDITION, 0.0), (grpc.StatusCode.UNAVAILABLE, 0.0)]
    with baton.Client(recorder.target) as c:
        with pytest.raises(baton.BatonError) as ei:
            c.get_session(session_key="k")
        assert ei.value.code == "FAILED_PRECONDITION"
        with pytest.raises(baton.BatonError) as ei:
            c.close_session(session_key="k")
        assert ei.value.code == "UNAVAILABLE"
    assert [name for name, _, _ in recorder.calls] == ["GetSession", "CloseSession"]


def test_creates_are_retried_with_one_key(recorder: Any) -> None:
    recorder.script = [(grpc.StatusCode.UNAVAILABLE, 0.0)]
    with baton.Client(recorder.target, retry=baton.RetryPolicy(initial_backoff=0.01, max_backoff=0.02)) as c:
        assert c.create_session(agent="a").session_key == "new"
    keys = [req.idempotency_key for name, _, req in recorder.calls]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys


def test_retries_give_up_after_max_attempts(recorder: Any) -> None:
    recorder.script = [(grpc.StatusCode.UNAVAILABLE, 0.0)] * 5
    policy = baton.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    with baton.Client(recorder.target, retry=policy) as c:
        with pytest.raises(baton.BatonError) as ei:
            c.get_session(session_key="k")
    assert ei.value.code == "UNAVAILABLE" and len(recorder.calls) == 3


def test_quickstart_example_runs(server: Batond) -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    env = dict(os.environ, BATON_TARGET=server.target)
    out = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "coder accepted" in out.stdout and "context package" in out.stdout
