"""baton-mcp driven by the official Python MCP SDK, over stdio and Streamable HTTP: once against
a live batond on its embedded store, once with the service inside baton-mcp (`--embedded`).

Run through scripts/test-gateway, which builds the binaries and passes their paths in
BATOND_BIN and BATON_MCP_BIN. Every test uses fresh session keys, so the tests share one
batond.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio

API_TOOLS = {
    "register_session",
    "get_session",
    "list_sessions",
    "close_session",
    "update_context",
    "get_context",
    "list_entries",
    "search_context",
    "request_handoff",
    "get_handoff",
    "list_handoffs",
    "accept_handoff",
    "reject_handoff",
    "complete_handoff",
    "cancel_handoff",
}
STREAM_TOOLS = {"stream_entries", "stream_handoff_context"}
# Data lifecycle (issue 14): tool name -> destructive.
LIFECYCLE_TOOLS = {"delete_session": True, "fork_session": False, "redact_entries": True, "compact_session": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(env: str) -> str:
    path = os.environ.get(env)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{env} must name the built binary (scripts/test-gateway sets it)")
    return path


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} was not ready at {url} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Servers:
    grpc_endpoint: str
    mcp_url: str
    http_base: str
    # How a stdio baton-mcp reaches the same data: `--endpoint` of the remote batond, or
    # `--embedded` on the same data directory (it shares the HTTP gateway's service).
    stdio_args: list[str]
    # API keys of the tenant "default" by role: the remote batond serves with `--auth api-key`;
    # the embedded service has no keys (empty).
    keys: dict[str, str]

    def auth_env(self, role: str = "writer") -> dict[str, str]:
        """The environment that gives a stdio baton-mcp the key of `role`."""
        return {"BATON_TOKEN": self.keys[role]} if self.keys else {}

    def auth_headers(self, role: str = "writer") -> dict[str, str]:
        """The HTTP headers that carry the key of `role`."""
        return {"authorization": f"Bearer {self.keys[role]}"} if self.keys else {}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def clean_env() -> dict[str, str]:
    """An embedded store and no Redis, whatever the developer's shell exports."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("BATON_", "OTEL_")) or k in ("DATABASE_URL", "REDIS_URL"))
    }


@contextmanager
def remote_servers(data_dir: str) -> Iterator[Servers]:
    """batond on its embedded store with API keys on, and baton-mcp on HTTP in front of it."""
    batond, baton_mcp = binary("BATOND_BIN"), binary("BATON_MCP_BIN")
    grpc_port, admin_port, mcp_port = free_port(), free_port(), free_port()
    env = clean_env()
    keys = {}
    for role in ("reader", "writer", "admin"):
        created = subprocess.run(
            [batond, "keys", "create", "--data-dir", data_dir, "--tenant", "default", "--role", role, "--name", f"gw-{role}"],
            env=env, check=True, capture_output=True, text=True,
        )
        keys[role] = created.stdout.strip().splitlines()[-1]
    server = subprocess.Popen(
        [
            batond,
            "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--admin-addr", f"127.0.0.1:{admin_port}",
            "--data-dir", data_dir,
            "--auth", "api-key",
        ],
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{admin_port}/ready", server, "batond")
        endpoint = f"http://127.0.0.1:{grpc_port}"
        gateway = subprocess.Popen(
            [
                baton_mcp,
                "--transport", "http",
                "--http-addr", f"127.0.0.1:{mcp_port}",
                "--endpoint", endpoint,
            ],
            env={**env, "RUST_LOG": "info"},
        )
        try:
            base = f"http://127.0.0.1:{mcp_port}"
            wait_http(f"{base}/health", gateway, "baton-mcp")
            yield Servers(endpoint, f"{base}/mcp", base, ["--endpoint", endpoint], keys)
        finally:
            stop(gateway)
    finally:
        stop(server)


@contextmanager
def embedded_servers(data_dir: str) -> Iterator[Servers]:
    """`baton-mcp --embedded` on HTTP, serving the data directory itself (its gRPC service on a
    fixed loopback port); the stdio clients run `--embedded` on the same directory."""
    grpc_port, mcp_port = free_port(), free_port()
    gateway = subprocess.Popen(
        [
            binary("BATON_MCP_BIN"),
            "--embedded",
            "--data-dir", data_dir,
            "--grpc-addr", f"127.0.0.1:{grpc_port}",
            "--transport", "http",
            "--http-addr", f"127.0.0.1:{mcp_port}",
        ],
        env={**clean_env(), "RUST_LOG": "info"},
    )
    try:
        base = f"http://127.0.0.1:{mcp_port}"
        wait_http(f"{base}/health", gateway, "baton-mcp --embedded")
        endpoint = f"http://127.0.0.1:{grpc_port}"
        yield Servers(endpoint, f"{base}/mcp", base, ["--embedded", "--data-dir", data_dir], {})
    finally:
        stop(gateway)


@pytest.fixture(scope="session", params=["remote", "embedded"])
def servers(request) -> Iterator[Servers]:
    """Every test runs against a remote batond and against `baton-mcp --embedded`."""
    start = remote_servers if request.param == "remote" else embedded_servers
    with tempfile.TemporaryDirectory(prefix=f"baton-gw-{request.param}-") as data_dir, start(data_dir) as servers:
        yield servers


@asynccontextmanager
async def connect(
    servers: Servers,
    transport: str,
    mode: str,
    *,
    headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    message_handler=None,
) -> AsyncIterator[Client]:
    """An MCP client on `transport` ("stdio": a baton-mcp child process; "http": the shared
    HTTP gateway), negotiating per `mode` ("auto": the newest revision; "legacy": initialize),
    with the writer key unless `env` / `headers` bring other credentials."""
    if transport == "stdio":
        params = StdioServerParameters(
            command=binary("BATON_MCP_BIN"),
            args=servers.stdio_args,
            env={"RUST_LOG": "warn", **servers.auth_env(), **(env or {})},
        )
        client = Client(stdio_client(params), mode=mode, message_handler=message_handler, cache=None)
        async with client:
            yield client
    else:
        headers = {**servers.auth_headers(), **(headers or {})}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
            client = Client(
                streamable_http_client(servers.mcp_url, http_client=http),
                mode=mode,
                message_handler=message_handler,
                cache=None,
            )
            async with client:
                yield client


CLIENTS = [("stdio", "auto"), ("stdio", "legacy"), ("http", "auto"), ("http", "legacy")]
client_params = pytest.mark.parametrize(("transport", "mode"), CLIENTS, ids=[f"{t}-{m}" for t, m in CLIENTS])


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def ok(client: Client, name: str, arguments: dict, **kwargs) -> dict:
    result = await client.call_tool(name, arguments, **kwargs)
    assert not result.is_error, f"{name} failed: {text_of(result)}"
    assert isinstance(result.structured_content, dict)
    assert text_of(result).strip(), "a text rendering accompanies the structured content"
    return result.structured_content


async def failing(client: Client, name: str, arguments: dict) -> str:
    result = await client.call_tool(name, arguments)
    assert result.is_error, f"{name} should have failed: {text_of(result)}"
    return text_of(result)


@client_params
async def test_negotiated_revision(servers: Servers, transport: str, mode: str) -> None:
    async with connect(servers, transport, mode) as client:
        expected = "2026-07-28" if mode == "auto" else "2025-11-25"
        assert client.protocol_version == expected


@client_params
async def test_tools_are_listed_with_schemas(servers: Servers, transport: str, mode: str) -> None:
    async with connect(servers, transport, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert API_TOOLS | STREAM_TOOLS | set(LIFECYCLE_TOOLS) <= set(tools)
        for tool in tools.values():
            assert tool.description and len(tool.description) > 10, tool.name
            assert tool.input_schema["type"] == "object", tool.name
            assert tool.output_schema and tool.output_schema["type"] == "object", tool.name

        register = tools["register_session"]
        props = register.input_schema["properties"]
        assert {"session_key", "agent", "metadata", "ttl"} <= set(props)
        assert register.input_schema["required"] == ["agent"]
        assert "owner" in props["agent"]["description"]
        assert props["metadata"]["type"] == "object"
        assert props["ttl"]["type"] == "string"
        assert "agentFrom" in register.description

        update = tools["update_context"]
        entry = update.input_schema["properties"]["entries"]["items"]
        assert "ENTRY_KIND_MESSAGE" in entry["properties"]["kind"]["enum"]
        assert set(entry["required"]) == {"kind", "author"}
        assert update.input_schema["properties"]["expected_last_seq"]["type"] == ["string", "integer"]

        assert tools["get_context"].annotations.read_only_hint is True
        assert tools["close_session"].annotations.destructive_hint is True
        assert tools["register_session"].annotations.read_only_hint is False
        stream = tools["stream_entries"].input_schema["properties"]["max_items"]
        assert stream["maximum"] == 1000 and stream["default"] == 200


@client_params
async def test_whole_handoff(servers: Servers, transport: str, mode: str) -> None:
    session_key = key("flow")
    async with connect(servers, transport, mode) as client:
        session = await ok(
            client,
            "register_session",
            {"session_key": session_key, "agent": "planner", "metadata": {"ticket": "BAT-1"}},
        )
        assert session["session_key"] == session_key
        assert session["owner"] == "planner"
        assert session["status"] == "SESSION_STATUS_ACTIVE"
        assert session["metadata"] == {"ticket": "BAT-1"}

        appended = await ok(
            client,
            "update_context",
            {
                "session_key": session_key,
                "entries": [
                    {"kind": "ENTRY_KIND_MESSAGE", "role": "user", "author": "planner", "text": "Migrate the schema"},
                    {"kind": "tool_call", "author": "planner", "text": "ran: ls migrations/"},
                ],
            },
        )
        assert (appended["first_seq"], appended["last_seq"]) == ("1", "2")

        # The earlier Node server's argument names.
        legacy = await ok(
            client,
            "update_context",
            {"sessionKey": session_key, "contextType": "message", "content": "Plan: add a column", "agentFrom": "planner"},
        )
        assert legacy["entries"][0]["kind"] == "ENTRY_KIND_MESSAGE"
        assert legacy["entries"][0]["author"] == "planner"
        assert legacy["entries"][0]["text"] == "Plan: add a column"
        # Without agentFrom the author is the session's owner, as with the old server.
        owned = await ok(
            client,
            "update_context",
            {"sessionKey": session_key, "contextType": "system", "content": "Deadline is Friday", "metadata": {"k": 1}},
        )
        assert owned["entries"][0]["author"] == "planner"
        assert owned["entries"][0]["kind"] == "ENTRY_KIND_SYSTEM"
        assert owned["entries"][0]["metadata"] == {"k": 1}

        window = await ok(client, "get_context", {"session_key": session_key})
        assert [e["seq"] for e in window["entries"]] == ["1", "2", "3", "4"]
        assert window["last_seq"] == "4"
        assert window["entries"][0]["text"] == "Migrate the schema"

        handoff = await ok(
            client,
            "request_handoff",
            {
                "sessionKey": session_key,
                "targetAgent": "coder",
                "requestType": "full_handoff",
                "requestData": {"instructions": "Write the migration", "priority": "high"},
            },
        )
        assert handoff["from_agent"] == "planner"
        assert handoff["to_agent"] == "coder"
        assert handoff["type"] == "HANDOFF_TYPE_FULL_HANDOFF"
        assert handoff["status"] == "HANDOFF_STATUS_PENDING"
        assert json.loads(handoff["instructions"]) == {"instructions": "Write the migration", "priority": "high"}
        assert handoff["up_to_seq"] == "4"
        handoff_id = handoff["handoff_id"]

        # Only the target may accept.
        denied = await failing(client, "accept_handoff", {"handoff_id": handoff_id, "agent": "intruder"})
        assert "PERMISSION_DENIED" in denied or "FAILED_PRECONDITION" in denied

        accepted = await ok(client, "accept_handoff", {"handoff_id": handoff_id, "agent": "coder"})
        assert accepted["status"] == "HANDOFF_STATUS_ACCEPTED"
        session = await ok(client, "get_session", {"session_key": session_key})
        assert session["owner"] == "coder"

        package = await ok(client, "stream_handoff_context", {"handoff_id": handoff_id})
        assert package["stopped"] == "end"
        assert package["entries"][0]["kind"] == "ENTRY_KIND_SUMMARY"
        assert package["count"] == len(package["entries"]) >= 2

        contents = (await client.read_resource(f"baton://sessions/{session_key}/context")).contents
        assert contents[0].mime_type == "application/json"
        context = json.loads(contents[0].text)
        assert [e["seq"] for e in context["entries"]] == ["1", "2", "3", "4"]
        alias = json.loads((await client.read_resource(f"handoff://context/{session_key}")).contents[0].text)
        assert alias["last_seq"] == "4"
        read_handoff = json.loads((await client.read_resource(f"baton://handoffs/{handoff_id}")).contents[0].text)
        assert read_handoff["status"] == "HANDOFF_STATUS_ACCEPTED"
        read_session = json.loads((await client.read_resource(f"baton://sessions/{session_key}")).contents[0].text)
        assert read_session["owner"] == "coder"

        completed = await ok(client, "complete_handoff", {"handoff_id": handoff_id, "agent": "coder"})
        assert completed["status"] == "HANDOFF_STATUS_COMPLETED"


@client_params
async def test_resources_and_templates(servers: Servers, transport: str, mode: str) -> None:
    session_key = key("res")
    async with connect(servers, transport, mode) as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "planner"})
        uris = {r.uri for r in (await client.list_resources()).resources}
        assert "baton://sessions" in uris
        assert f"baton://sessions/{session_key}/context" in uris
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {
            "baton://sessions/{session_key}",
            "baton://sessions/{session_key}/context",
            "baton://handoffs/{handoff_id}",
        }
        listed = json.loads((await client.read_resource("handoff://sessions")).contents[0].text)
        assert session_key in [s["session_key"] for s in listed["sessions"]]


@client_params
async def test_bad_arguments_are_tool_errors_naming_the_field(servers: Servers, transport: str, mode: str) -> None:
    async with connect(servers, transport, mode) as client:
        text = await failing(client, "register_session", {"agent": 42})
        assert "INVALID_ARGUMENT" in text and "`agent`" in text and "string" in text
        text = await failing(client, "register_session", {"agnet": "planner"})
        assert "`agnet`" in text and "unknown field" in text
        text = await failing(client, "register_session", {"session_key": key("x")})
        assert "`agent`" in text and "required" in text
        text = await failing(
            client,
            "update_context",
            {"session_key": "s", "entries": [{"kind": "POEM", "author": "a", "text": "x"}]},
        )
        assert "`entries[0].kind`" in text and "ENTRY_KIND_MESSAGE" in text
        text = await failing(client, "stream_entries", {"session_key": "s", "max_items": 5000})
        assert "`max_items`" in text
        # The server's own validation comes back with its field violations.
        text = await failing(client, "register_session", {"session_key": "bad key!", "agent": "planner"})
        assert text.startswith("INVALID_ARGUMENT") and "session_key" in text


@client_params
async def test_not_found_is_a_tool_error(servers: Servers, transport: str, mode: str) -> None:
    async with connect(servers, transport, mode) as client:
        text = await failing(client, "get_session", {"session_key": key("missing")})
        assert text.startswith("NOT_FOUND")
        text = await failing(client, "get_handoff", {"handoff_id": "no-such-handoff"})
        assert text.startswith("NOT_FOUND") or text.startswith("INVALID_ARGUMENT")


@client_params
async def test_stream_tool_reports_progress(servers: Servers, transport: str, mode: str) -> None:
    session_key = key("stream")
    async with connect(servers, transport, mode) as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        entries = [{"kind": "MESSAGE", "author": "a", "text": f"entry {i}"} for i in range(5)]
        await ok(client, "update_context", {"session_key": session_key, "entries": entries})

        progress: list[tuple[float, float | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total))

        limited = await ok(
            client,
            "stream_entries",
            {"session_key": session_key, "max_items": 3},
            progress_callback=on_progress,
        )
        assert limited["count"] == 3 and limited["stopped"] == "max_items"
        assert [e["seq"] for e in limited["entries"]] == ["1", "2", "3"]
        await anyio.sleep(0.2)  # notifications may trail the result on some transports
        assert [p[0] for p in progress] == [1, 2, 3]
        assert all(total == 3 for _, total in progress)

        rest = await ok(client, "stream_entries", {"session_key": session_key, "after_seq": "3"})
        assert rest["stopped"] == "end"
        assert [e["text"] for e in rest["entries"]] == ["entry 3", "entry 4"]


class Updates:
    """A message handler that collects the URIs of notifications/resources/updated."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            self.uris.append(str(message.params.uri))
            self._arrived.set()

    async def wait_for(self, count: int, timeout: float = 15) -> None:
        """Waits until `count` notifications arrived in all."""
        with anyio.fail_after(timeout):
            while len(self.uris) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_legacy_subscription_notifies_on_new_entries(servers: Servers, transport: str) -> None:
    session_key = key("sub")
    uri = f"baton://sessions/{session_key}/context"
    updated = Updates()
    async with connect(servers, transport, "legacy", message_handler=updated) as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        await client.session.subscribe_resource(uri)
        await ok(client, "update_context", {"sessionKey": session_key, "content": "first news"})
        await updated.wait_for(1)
        assert updated.uris[0] == uri
        await client.session.unsubscribe_resource(uri)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_listen_subscription_notifies_on_new_entries(servers: Servers, transport: str) -> None:
    session_key = key("listen")
    uri = f"baton://sessions/{session_key}/context"
    async with connect(servers, transport, "auto") as client:
        assert client.protocol_version == "2026-07-28"
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            assert list(subscription.honored.resource_subscriptions or []) == [uri]
            async with connect(servers, "http", "auto") as writer:
                await ok(writer, "update_context", {"sessionKey": session_key, "content": "live"})
            with anyio.fail_after(15):
                event = await subscription.__anext__()
            assert event.uri == uri


async def test_tenant_is_forwarded(servers: Servers) -> None:
    session_key = key("tenant")
    # Naming another tenant takes an admin key.
    admin_env, admin = servers.auth_env("admin"), servers.auth_headers("admin")
    async with connect(servers, "stdio", "legacy", env={"BATON_TENANT": "tenant-a", **admin_env}) as a:
        await ok(a, "register_session", {"session_key": session_key, "agent": "a"})
        await ok(a, "get_session", {"session_key": session_key})
    async with connect(servers, "http", "legacy", headers={"x-baton-tenant": "tenant-b", **admin}) as b:
        assert (await failing(b, "get_session", {"session_key": session_key})).startswith("NOT_FOUND")
    async with connect(servers, "http", "legacy", headers={"x-baton-tenant": "tenant-a", **admin}) as a_http:
        await ok(a_http, "get_session", {"session_key": session_key})


async def test_trace_context_is_forwarded_over_http(servers: Servers) -> None:
    session_key = key("trace")
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    headers = {"traceparent": traceparent}
    async with connect(servers, "http", "legacy", headers=headers) as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        appended = await ok(client, "update_context", {"sessionKey": session_key, "content": "traced"})
        assert appended["entries"][0]["trace_id"] == trace_id


def post(
    servers: Servers, body: dict, session_id: str | None = None, version: str | None = None
) -> tuple[dict | None, dict]:
    """One JSON-RPC POST (with the writer key) as a bare 2024-11-05 client would send it; returns
    (message, headers)."""
    url = servers.mcp_url
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    headers.update(servers.auth_headers())
    if session_id:
        headers["mcp-session-id"] = session_id
    if version:
        headers["mcp-protocol-version"] = version
    response = httpx2.post(url, json=body, headers=headers, timeout=30)
    assert response.status_code in (200, 202), response.text
    if response.status_code == 202 or not response.text.strip():
        return None, dict(response.headers)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                message = json.loads(line[5:])
                if "id" in message and message.get("id") == body.get("id"):
                    return message, dict(response.headers)
        raise AssertionError(f"no response in the event stream: {response.text}")
    return response.json(), dict(response.headers)


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18"])
def test_clients_negotiating_older_revisions_over_http(servers: Servers, version: str) -> None:
    init, headers = post(
        servers,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "old-client", "version": "0.1"},
            },
        },
    )
    assert init["result"]["protocolVersion"] == version
    assert init["result"]["serverInfo"]["name"] == "baton-mcp"
    session_id = headers.get("mcp-session-id")
    assert session_id
    # The MCP-Protocol-Version header exists from 2025-06-18 on.
    header_version = version if version >= "2025-06-18" else None
    post(servers, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session_id, header_version)

    tools, _ = post(servers, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session_id, header_version)
    assert API_TOOLS <= {t["name"] for t in tools["result"]["tools"]}

    session_key = key("old")
    call, _ = post(
        servers,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "register_session", "arguments": {"sessionKey": session_key, "agentFrom": "old-agent"}},
        },
        session_id,
        header_version,
    )
    result = call["result"]
    assert not result.get("isError")
    text = result["content"][0]["text"]
    if version < "2025-06-18":
        # No structured content in these revisions: the text is the JSON itself.
        payload = json.loads(text)
        assert "structuredContent" not in result or result["structuredContent"] == payload
    else:
        payload = result["structuredContent"]
        assert text.startswith(f"session_key: {session_key}")
    assert payload["session_key"] == session_key and payload["owner"] == "old-agent"

    read, _ = post(
        servers,
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": f"baton://sessions/{session_key}"}},
        session_id,
        header_version,
    )
    assert json.loads(read["result"]["contents"][0]["text"])["owner"] == "old-agent"

    missing, _ = post(
        servers,
        {"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "baton://sessions/no-such-session"}},
        session_id,
        header_version,
    )
    assert "error" in missing and "not found" in missing["error"]["message"]


class StdioPeer:
    """baton-mcp on stdio spoken to line by line, for messages an SDK client will not send."""

    def __init__(self, servers: Servers) -> None:
        self.proc = subprocess.Popen(
            [binary("BATON_MCP_BIN"), *servers.stdio_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "warn", **servers.auth_env()},
        )
        self.pending = b""

    def request(self, body: dict, timeout: float = 30.0) -> dict | None:
        """Sends `body`; returns the response with its id (None for a notification)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(body).encode() + b"\n")
        self.proc.stdin.flush()
        if "id" not in body:
            return None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == body["id"]:
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                pytest.fail(f"no response to {body['method']} within {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"baton-mcp closed stdout (exit status {self.proc.poll()})")
            self.pending += chunk

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def raw_session(servers: Servers, transport: str) -> tuple:
    """Initializes a bare JSON-RPC session; returns (send, close): send(body) -> response."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    if transport == "stdio":
        peer = StdioPeer(servers)
        assert peer.request(init)["result"]["serverInfo"]["name"] == "baton-mcp"
        peer.request(initialized)
        return peer.request, peer.close
    reply, headers = post(servers, init)
    assert reply["result"]["serverInfo"]["name"] == "baton-mcp"
    session_id = headers.get("mcp-session-id")
    post(servers, initialized, session_id, "2025-06-18")
    return (lambda body: post(servers, body, session_id, "2025-06-18")[0]), (lambda: None)


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("arguments", ["a string", ["a", "list"], 42, True], ids=["string", "array", "number", "bool"])
def test_non_object_arguments_are_invalid_params(servers: Servers, transport: str, arguments) -> None:
    """MCP tool arguments are an object: anything else is a JSON-RPC invalid-params error that
    names the field (not "method not found", not a dropped connection), and the session goes on."""
    send, close = raw_session(servers, transport)
    try:
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "get_session", "arguments": arguments}}
        reply = send(call)
        assert reply["id"] == 2 and "result" not in reply, reply
        error = reply["error"]
        assert error["code"] == -32602, error
        assert "arguments" in error["message"] and "expected a JSON object" in error["message"], error
        assert error["data"]["field_violations"][0]["field"] == "arguments"

        # A well-formed call on the same session still works.
        session_key = key("raw")
        reply = send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "register_session", "arguments": {"session_key": session_key, "agent": "a"}}})
        assert not reply["result"].get("isError"), reply
        assert reply["result"]["structuredContent"]["session_key"] == session_key
        # A method MCP does not define stays "method not found".
        reply = send({"jsonrpc": "2.0", "id": 4, "method": "vendor/unknown", "params": {}})
        assert reply["error"]["code"] == -32601, reply
    finally:
        close()


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_follow_stream_returns_live_entries_and_stops_at_the_deadline(servers: Servers, transport: str) -> None:
    session_key = key("follow")
    async with connect(servers, transport, "auto") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})

        async def append_later() -> None:
            await anyio.sleep(0.5)
            async with connect(servers, "http", "legacy") as writer:
                for text in ("one", "two"):
                    await ok(writer, "update_context", {"sessionKey": session_key, "content": text})

        async with anyio.create_task_group() as tg:
            tg.start_soon(append_later)
            live = await ok(client, "stream_entries", {"session_key": session_key, "follow": True, "max_items": 2})
        assert live["stopped"] == "max_items"
        assert [e["text"] for e in live["entries"]] == ["one", "two"]

    # Nothing new arrives: the call returns at its deadline with what it has.
    async with connect(servers, "stdio", "legacy", env={"BATON_CALL_TIMEOUT_MS": "1500"}) as client:
        started = time.monotonic()
        idle = await ok(client, "stream_entries", {"session_key": session_key, "after_seq": 2, "follow": True})
        assert idle["stopped"] == "deadline" and idle["count"] == 0
        assert 1.0 < time.monotonic() - started < 10


async def test_stdio_forwards_trace_context_from_meta(servers: Servers) -> None:
    session_key = key("meta")
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with connect(servers, "stdio", "legacy") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        appended = await ok(
            client,
            "update_context",
            {"sessionKey": session_key, "content": "traced"},
            meta={"traceparent": traceparent},
        )
        assert appended["entries"][0]["trace_id"] == trace_id


async def test_readme_client_configuration_works_as_written(servers: Servers) -> None:
    """Starts the `mcpServers` entry of the README: its command found on PATH, its args and
    env, with only the endpoint pointed at the test's batond."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, re.S)]
    # The team setup's entry: the baton-mcp binary itself (the one-line ones are uvx / npx, run by
    # packaging/tests against the installed packages).
    servers_blocks = [b.get("mcpServers", {}).get("baton", {}) for b in blocks]
    config = next(c for c in servers_blocks if c.get("command") == "baton-mcp")
    assert config["command"] == "baton-mcp"
    bin_dir = os.path.dirname(binary("BATON_MCP_BIN"))
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    assert shutil.which(config["command"], path=path)
    args = [servers.grpc_endpoint if a == "http://127.0.0.1:50051" else a for a in config["args"]]
    params = StdioServerParameters(command=config["command"], args=args, env={**config.get("env", {}), **servers.auth_env(), "PATH": path})
    async with Client(stdio_client(params), cache=None) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert API_TOOLS <= names
        await ok(client, "register_session", {"session_key": key("readme"), "agent": "a"})


def test_health(servers: Servers) -> None:
    with urllib.request.urlopen(f"{servers.http_base}/health", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}


def test_http_asks_for_a_baton_key(servers: Servers) -> None:
    """Without a key, or with one batond does not know, the HTTP transport answers 401 with a
    bearer challenge (MCP authorization), before any MCP session exists; the embedded service
    has no keys and lets every local caller in."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "k", "version": "0"}},
    }
    plain = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    missing = httpx2.post(servers.mcp_url, json=init, headers=plain, timeout=30)
    unknown_key = "bk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    unknown = httpx2.post(servers.mcp_url, json=init, headers={**plain, "authorization": f"Bearer {unknown_key}"}, timeout=30)
    if not servers.keys:
        assert missing.status_code == 200, missing.text
        return
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="baton"'
    assert missing.json()["error"] == "unauthorized"
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"].startswith('Bearer realm="baton", error="invalid_token"')
    for role in ("reader", "writer", "admin"):
        accepted = httpx2.post(servers.mcp_url, json=init, headers={**plain, **servers.auth_headers(role)}, timeout=30)
        assert accepted.status_code == 200, (role, accepted.text)


def test_delete_ends_the_session_with_204(servers: Servers) -> None:
    """DELETE /mcp ends the MCP session with 204 No Content (the official SDKs warn on 202),
    and the ended session is gone: a request naming it is 404."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "d", "version": "0"}},
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", **servers.auth_headers()}
    opened = httpx2.post(servers.mcp_url, json=init, headers=headers, timeout=30)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    ended = httpx2.delete(
        servers.mcp_url, headers={**headers, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}, timeout=30
    )
    assert ended.status_code == 204, (ended.status_code, ended.text)
    assert ended.content == b""
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    gone = httpx2.post(
        servers.mcp_url,
        json=ping,
        headers={**headers, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"},
        timeout=30,
    )
    assert gone.status_code == 404, (gone.status_code, gone.text)


def remote_only(servers: Servers) -> None:
    if not servers.keys:
        pytest.skip("the embedded service serves loopback without keys")


async def test_stdio_without_a_key_is_unauthenticated(servers: Servers) -> None:
    remote_only(servers)
    async with connect(servers, "stdio", "legacy", env={"BATON_TOKEN": ""}) as client:
        assert (await failing(client, "list_sessions", {})).startswith("UNAUTHENTICATED")
    async with connect(servers, "stdio", "legacy", env={"BATON_TOKEN": "bk_not_a_key"}) as client:
        assert (await failing(client, "list_sessions", {})).startswith("UNAUTHENTICATED")


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_roles_and_tenants_of_keys(servers: Servers, transport: str) -> None:
    """A reader reads but cannot write; a writer cannot name another tenant."""
    remote_only(servers)
    session_key = key("roles")
    async with connect(servers, transport, "legacy") as writer:
        await ok(writer, "register_session", {"session_key": session_key, "agent": "a"})
    reader_auth = {"env": servers.auth_env("reader")} if transport == "stdio" else {"headers": servers.auth_headers("reader")}
    async with connect(servers, transport, "legacy", **reader_auth) as reader:
        assert (await ok(reader, "get_session", {"session_key": session_key}))["owner"] == "a"
        denied = await failing(reader, "update_context", {"sessionKey": session_key, "content": "no"})
        assert denied.startswith("PERMISSION_DENIED"), denied
    other = {"env": {"BATON_TENANT": "tenant-x"}} if transport == "stdio" else {"headers": {"x-baton-tenant": "tenant-x"}}
    async with connect(servers, transport, "legacy", **other) as elsewhere:
        denied = await failing(elsewhere, "get_session", {"session_key": session_key})
        assert denied.startswith("PERMISSION_DENIED"), denied


# --- Data lifecycle (issue 14): delete, fork, redact, compact, legal hold -------------------


def as_role(servers: Servers, transport: str, role: str) -> dict:
    """connect() arguments that carry the key of `role` (none on the embedded service, whose
    local callers are admins)."""
    return {"env": servers.auth_env(role)} if transport == "stdio" else {"headers": servers.auth_headers(role)}


def messages(author: str, *texts: str) -> list[dict]:
    return [{"kind": "MESSAGE", "author": author, "text": t} for t in texts]


async def append(client: Client, session_key: str, entries: list[dict]) -> dict:
    return await ok(client, "update_context", {"session_key": session_key, "entries": entries})


@client_params
async def test_lifecycle_tools_are_listed_with_hints_and_schemas(servers: Servers, transport: str, mode: str) -> None:
    async with connect(servers, transport, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name, destructive in LIFECYCLE_TOOLS.items():
            hints = tools[name].annotations
            assert hints.read_only_hint is False, name
            assert hints.destructive_hint is destructive, name
            assert tools[name].output_schema["type"] == "object", name

        def schema(name: str) -> tuple[dict, list[str]]:
            return tools[name].input_schema["properties"], tools[name].input_schema.get("required", [])

        props, required = schema("delete_session")
        assert set(props) == {"session_key"} and required == ["session_key"]
        assert "legal hold" in tools["delete_session"].description
        assert "NOT_FOUND" in tools["delete_session"].description

        props, required = schema("fork_session")
        assert set(props) == {"session_key", "at_seq", "new_session_key", "agent", "idempotency_key"}
        assert "safe to retry" in props["idempotency_key"]["description"]
        assert set(required) == {"session_key", "agent"}
        assert props["at_seq"]["description"].startswith("The last seq copied: 0 (or unset) for the source's newest")
        assert props["at_seq"]["type"] == ["string", "integer"]
        assert "generated when empty" in props["new_session_key"]["description"]
        assert "owning the fork" in props["agent"]["description"]
        assert "forked_from" in tools["fork_session"].description

        props, required = schema("redact_entries")
        assert set(props) == {"session_key", "seqs", "reason", "agent", "expected_last_seq"}
        assert set(required) == {"session_key", "agent"}
        assert props["seqs"]["type"] == "array" and props["seqs"]["items"]["type"] == ["string", "integer"]
        assert "at least first_seq" in props["seqs"]["description"]
        assert "audit log" in props["reason"]["description"]
        assert "retract exactly the entry it appended last" in props["expected_last_seq"]["description"]
        assert "redacted = true" in tools["redact_entries"].description

        props, required = schema("compact_session")
        assert set(props) == {"session_key", "before_seq", "force"} and required == ["session_key"]
        assert props["force"]["type"] == "boolean" and "SUMMARY" in props["force"]["description"]
        assert "at most last_seq + 1" in props["before_seq"]["description"]
        assert "FAILED_PRECONDITION" in tools["compact_session"].description

        props, _ = schema("update_session")
        assert props["legal_hold"]["type"] == "boolean" and "admin keys only" in props["legal_hold"]["description"]
        assert set(props["retention"]["properties"]) == {"keep_latest", "max_age"}

        # The results: a Session with the new fields; entries that say whether they were redacted.
        session_out = tools["fork_session"].output_schema["properties"]
        assert {"forked_from", "first_seq", "legal_hold", "retention"} <= set(session_out)
        assert tools["compact_session"].output_schema["properties"] == session_out
        entry_out = tools["redact_entries"].output_schema["properties"]["entries"]["items"]["properties"]
        assert {"redacted", "redaction"} <= set(entry_out)
        assert "deleted_entries" in tools["delete_session"].output_schema["properties"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_fork_session_copies_entries_and_keeps_the_lineage(servers: Servers, transport: str) -> None:
    source, fork_key = key("src"), key("fork")
    async with connect(servers, transport, "auto") as client:
        await ok(client, "register_session", {"session_key": source, "agent": "planner"})
        await append(client, source, messages("planner", *(f"step {i}" for i in range(1, 6))))

        result = await client.call_tool(
            "fork_session", {"session_key": source, "at_seq": 3, "new_session_key": fork_key, "agent": "coder"}
        )
        assert not result.is_error, text_of(result)
        fork = result.structured_content
        assert (fork["session_key"], fork["owner"], fork["created_by"]) == (fork_key, "coder", "coder")
        assert fork["last_seq"] == "3" and fork["first_seq"] == "1"
        assert fork["forked_from"] == {"session_key": source, "seq": "3"}
        assert fork["legal_hold"] is False
        text = text_of(result)
        assert f"forked_from:\n  session_key: {source}\n  seq: 3\nfirst_seq: 1" in text
        assert "legal_hold" not in text, "an unset flag is left out of the text"

        copied = await ok(client, "list_entries", {"session_key": fork_key})
        assert [(e["seq"], e["text"], e["session_key"], e["author"]) for e in copied["entries"]] == [
            (str(i), f"step {i}", fork_key, "planner") for i in range(1, 4)
        ]
        assert (await append(client, fork_key, messages("coder", "my turn")))["first_seq"] == "4"
        assert (await ok(client, "get_session", {"session_key": source}))["last_seq"] == "5", "the source is unchanged"

        # A fork of the fork, at the newest seq (at_seq unset), under a generated key.
        second = await ok(client, "fork_session", {"session_key": fork_key, "agent": "reviewer"})
        assert second["session_key"] not in ("", source, fork_key)
        assert second["forked_from"] == {"session_key": fork_key, "seq": "4"}
        read = json.loads((await client.read_resource(f"baton://sessions/{fork_key}")).contents[0].text)
        assert read["forked_from"] == {"session_key": source, "seq": "3"}, "the chain stays visible"

        beyond = await failing(client, "fork_session", {"session_key": source, "at_seq": 6, "agent": "x"})
        assert beyond.startswith("INVALID_ARGUMENT"), beyond
        taken = await failing(
            client, "fork_session", {"session_key": source, "new_session_key": fork_key, "agent": "x"}
        )
        assert taken.startswith("ALREADY_EXISTS"), taken
        missing = await failing(client, "fork_session", {"session_key": key("none"), "agent": "x"})
        assert missing.startswith("NOT_FOUND"), missing


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_redact_entries_erases_content_from_every_read(servers: Servers, transport: str) -> None:
    session_key = key("redact")
    word = f"zq{uuid.uuid4().hex[:12]}"
    async with connect(servers, transport, "auto") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "planner"})
        personal = {"kind": "MESSAGE", "author": "planner", "role": "user", "text": f"the {word} code is 4242"}
        personal["metadata"] = {"pii": "yes"}
        entries = [*messages("planner", "plan the release"), personal, *messages("planner", "ship it")]
        await append(client, session_key, entries)
        before = await ok(client, "search_context", {"session_key": session_key, "query": word})
        assert [h["entry"]["seq"] for h in before["hits"]] == ["2"]

        result = await client.call_tool(
            "redact_entries", {"session_key": session_key, "seqs": [2], "reason": "personal data", "agent": "planner"}
        )
        assert not result.is_error, text_of(result)
        (entry,) = result.structured_content["entries"]
        assert entry["seq"] == "2" and entry["redacted"] is True
        assert (entry["kind"], entry["role"], entry["author"]) == ("ENTRY_KIND_MESSAGE", "user", "planner")
        assert entry.get("text", "") == "" and not entry.get("metadata")
        assert entry["redaction"]["redacted_by"] == "planner" and entry["redaction"]["reason"] == "personal data"
        assert entry["redaction"]["redacted_at"]
        text = text_of(result)
        assert "redacted: true" in text and "reason: personal data" in text and word not in text

        listed = await client.call_tool("list_entries", {"session_key": session_key})
        entries = listed.structured_content["entries"]
        assert [(e["seq"], e["redacted"]) for e in entries] == [("1", False), ("2", True), ("3", False)]
        assert entries[1].get("text", "") == ""
        assert word not in json.dumps(listed.structured_content) and word not in text_of(listed)
        assert text_of(listed).count("redacted: true") == 1
        assert "redacted: false" not in text_of(listed), "only the redacted entry says so"

        window = await ok(client, "get_context", {"session_key": session_key})
        assert [e["seq"] for e in window["entries"]] == ["1", "3"], "windows skip redacted entries"
        resource = (await client.read_resource(f"baton://sessions/{session_key}/context")).contents[0].text
        assert word not in resource
        assert [e["seq"] for e in json.loads(resource)["entries"]] == ["1", "3"]
        assert (await ok(client, "search_context", {"session_key": session_key, "query": word}))["hits"] == []
        replay = await ok(client, "stream_entries", {"session_key": session_key})
        assert [e["redacted"] for e in replay["entries"]] == [False, True, False]

        unknown = await failing(
            client, "redact_entries", {"session_key": session_key, "seqs": [1, 9], "reason": "x", "agent": "planner"}
        )
        assert unknown.startswith("INVALID_ARGUMENT"), unknown
        assert not (await ok(client, "list_entries", {"session_key": session_key}))["entries"][0]["redacted"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_retract_last_needs_the_current_last_seq(servers: Servers, transport: str) -> None:
    session_key = key("pop")
    async with connect(servers, transport, "legacy") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        await append(client, session_key, messages("a", "keep", "oops"))
        retract = {"session_key": session_key, "seqs": [2], "reason": "pop", "agent": "a"}
        stale = await client.call_tool("redact_entries", {**retract, "expected_last_seq": 1})
        assert stale.is_error
        assert text_of(stale).startswith("FAILED_PRECONDITION"), text_of(stale)
        assert stale.structured_content["code"] == "FAILED_PRECONDITION"
        listed = await ok(client, "list_entries", {"session_key": session_key})
        assert [(e["text"], e["redacted"]) for e in listed["entries"]] == [("keep", False), ("oops", False)]

        # 64-bit integers as strings, as proto3 JSON writes them.
        popped = await ok(client, "redact_entries", {**retract, "seqs": ["2"], "expected_last_seq": "2"})
        assert popped["entries"][0]["redacted"] is True
        listed = await ok(client, "list_entries", {"session_key": session_key})
        assert [e["redacted"] for e in listed["entries"]] == [False, True]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_delete_session_erases_it_and_tells_subscribers(servers: Servers, transport: str) -> None:
    session_key = key("delete")
    uri = f"baton://sessions/{session_key}/context"
    updated = Updates()
    async with connect(servers, transport, "legacy", message_handler=updated) as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        await append(client, session_key, messages("a", "one", "two"))
        await client.session.subscribe_resource(uri)

        result = await client.call_tool("delete_session", {"session_key": session_key})
        assert not result.is_error, text_of(result)
        assert result.structured_content == {"deleted_entries": "2"}
        assert text_of(result) == "deleted_entries: 2"
        # The follow behind the subscription ends with NOT_FOUND: the subscriber hears once.
        await updated.wait_for(1)
        assert updated.uris == [uri]

        assert (await failing(client, "get_session", {"session_key": session_key})).startswith("NOT_FOUND")
        assert (await failing(client, "list_entries", {"session_key": session_key})).startswith("NOT_FOUND")
        for resource in (f"baton://sessions/{session_key}", uri):
            with pytest.raises(MCPError) as read:
                await client.read_resource(resource)
            assert "not found" in read.value.message, read.value.message
        assert (await failing(client, "delete_session", {"session_key": session_key})).startswith("NOT_FOUND")
        listed = await ok(client, "list_sessions", {"page_size": 1000})
        assert session_key not in [s["session_key"] for s in listed["sessions"]]

        # The key is free again; subscribing to it again follows the new session.
        await ok(client, "register_session", {"session_key": session_key, "agent": "b"})
        await client.session.subscribe_resource(uri)
        await append(client, session_key, messages("b", "new life"))
        await updated.wait_for(2)
        assert updated.uris == [uri, uri]


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_compact_session_moves_first_seq_and_refuses_reads_below_it(servers: Servers, transport: str) -> None:
    session_key = key("compact")
    async with connect(servers, transport, "auto") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        await append(client, session_key, messages("a", "m1", "m2", "m3", "m4"))
        await append(client, session_key, [{"kind": "SUMMARY", "author": "a", "text": "summary of 1-4"}])
        await append(client, session_key, messages("a", "m6", "m7", "m8"))

        guarded = await failing(client, "compact_session", {"session_key": session_key, "before_seq": 7})
        assert guarded.startswith("FAILED_PRECONDITION"), guarded
        result = await client.call_tool("compact_session", {"session_key": session_key, "before_seq": 5})
        assert not result.is_error, text_of(result)
        assert (result.structured_content["first_seq"], result.structured_content["last_seq"]) == ("5", "8")
        assert "first_seq: 5" in text_of(result)
        assert (await ok(client, "get_session", {"session_key": session_key}))["first_seq"] == "5"

        # From the start: OUT_OF_RANGE (never a silent gap), with the way on in the message.
        below = await client.call_tool("list_entries", {"session_key": session_key})
        assert below.is_error
        assert text_of(below).startswith("OUT_OF_RANGE"), text_of(below)
        assert below.structured_content["code"] == "OUT_OF_RANGE"
        assert "after_seq" in text_of(below)
        streamed = await failing(client, "stream_entries", {"session_key": session_key, "after_seq": 2})
        assert streamed.startswith("OUT_OF_RANGE"), streamed
        kept = await ok(client, "list_entries", {"session_key": session_key, "after_seq": 4})
        assert [e["seq"] for e in kept["entries"]] == ["5", "6", "7", "8"]
        window = await ok(client, "get_context", {"session_key": session_key})
        assert window["summary"]["seq"] == "5" and [e["seq"] for e in window["entries"]] == ["6", "7", "8"]

        forced = await ok(client, "compact_session", {"session_key": session_key, "before_seq": 7, "force": True})
        assert forced["first_seq"] == "7"
        window = await ok(client, "get_context", {"session_key": session_key})
        assert "summary" not in window and [e["seq"] for e in window["entries"]] == ["7", "8"]
        beyond = await failing(client, "compact_session", {"session_key": session_key, "before_seq": 10, "force": True})
        assert beyond.startswith("INVALID_ARGUMENT"), beyond


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_legal_hold_blocks_delete_redact_and_compact(servers: Servers, transport: str) -> None:
    session_key = key("hold")
    async with connect(servers, transport, "legacy") as writer:
        await ok(writer, "register_session", {"session_key": session_key, "agent": "a"})
        await append(writer, session_key, messages("a", "m1", "m2", "m3"))
        if servers.keys:
            denied = await failing(writer, "update_session", {"session_key": session_key, "legal_hold": True})
            assert denied.startswith("PERMISSION_DENIED"), denied

        async with connect(servers, transport, "legacy", **as_role(servers, transport, "admin")) as admin:
            held = await admin.call_tool("update_session", {"session_key": session_key, "legal_hold": True})
            assert not held.is_error, text_of(held)
            assert held.structured_content["legal_hold"] is True
            assert "legal_hold: true" in text_of(held)

            for client in (writer, admin):
                for name, arguments in [
                    ("delete_session", {"session_key": session_key}),
                    ("compact_session", {"session_key": session_key, "before_seq": 2, "force": True}),
                    ("redact_entries", {"session_key": session_key, "seqs": [1], "reason": "x", "agent": "a"}),
                ]:
                    refused = await client.call_tool(name, arguments)
                    assert refused.is_error, name
                    assert text_of(refused).startswith("FAILED_PRECONDITION"), text_of(refused)
                    assert "legal hold" in text_of(refused)
                    assert refused.structured_content["precondition_failures"][0]["type"] == "LEGAL_HOLD"
            session = await ok(writer, "get_session", {"session_key": session_key})
            assert (session["last_seq"], session["first_seq"], session["legal_hold"]) == ("3", "1", True)
            assert not (await ok(writer, "list_entries", {"session_key": session_key}))["entries"][0]["redacted"]

            lifted = await ok(admin, "update_session", {"session_key": session_key, "legal_hold": False})
            assert lifted["legal_hold"] is False
        assert (await ok(writer, "delete_session", {"session_key": session_key}))["deleted_entries"] == "3"
        assert (await failing(writer, "get_session", {"session_key": session_key})).startswith("NOT_FOUND")


async def test_secrets_in_appended_text_are_redacted_on_ingest(servers: Servers) -> None:
    """batond (remote) and the embedded service both redact secrets before storing (the default
    of --redact-secrets)."""
    session_key = key("ingest")
    async with connect(servers, "http", "auto") as client:
        await ok(client, "register_session", {"session_key": session_key, "agent": "a"})
        text = "deploy with AKIAIOSFODNN7EXAMPLE, commit 9f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6"
        appended = await ok(client, "update_context", {"sessionKey": session_key, "content": text})
        stored = appended["entries"][0]
        assert "AKIAIOSFODNN7EXAMPLE" not in stored["text"] and "[REDACTED:aws_access_key]" in stored["text"]
        assert "9f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6" in stored["text"], "a git SHA is no secret"
        assert "baton_redactions" in stored["metadata"]
        window = await ok(client, "get_context", {"session_key": session_key})
        assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(window)
