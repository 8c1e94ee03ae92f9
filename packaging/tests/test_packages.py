"""The installable baton-mcp packages, installed from their files as a user's tool would install
them, started as an MCP client starts them, and driven with the official MCP SDK.

Run by scripts/test mcp-packages (scripts/parts/mcp-packages.sh), which builds the packages with
packaging/build.py and passes them in BATON_WHEEL (the wheel) and BATON_NPM_PACKAGES (the npm
tarballs, space-separated). Each test runs once for the wheel (a fresh virtualenv,
`<venv>/bin/baton-mcp`) and once for npm (a fresh project, `node_modules/.bin/baton-mcp`, the
shim that runs the platform package's binary).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


@dataclass
class Install:
    kind: str
    # The command an MCP client's configuration names.
    command: str


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def env_path(name: str) -> list[Path]:
    value = os.environ.get(name, "").split()
    paths = [Path(p) for p in value]
    if not paths or not all(p.is_file() for p in paths):
        pytest.fail(f"{name} must name the built package file(s) (scripts/test mcp-packages sets it)")
    return paths


def run(cmd: list[str], cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session", params=["wheel", "npm"])
def install(request, tmp_path_factory) -> Install:
    """A fresh install from the local package files; no registry is asked for them."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "wheel":
        (wheel,) = env_path("BATON_WHEEL")
        run([sys.executable, "-m", "venv", str(root / "venv")])
        pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        run([*pip, "install", "--quiet", "--no-index", str(wheel)])
        command = root / "venv" / "bin" / "baton-mcp"
    else:
        tarballs = env_path("BATON_NPM_PACKAGES")
        (root / "package.json").write_text('{"private": true}\n')
        # --offline: the platform packages of other machines (optional) are skipped, not fetched.
        run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", *map(str, tarballs)], root)
        command = root / "node_modules" / ".bin" / "baton-mcp"
    assert os.access(command, os.X_OK), f"{command} is not installed"
    return Install(request.param, str(command))


@asynccontextmanager
async def client(install: Install, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=install.command, args=list(args), env={"RUST_LOG": "warn", **(env or {})})
    async with Client(stdio_client(params), cache=None) as c:
        yield c


async def ok(c: Client, name: str, arguments: dict) -> dict:
    result = await c.call_tool(name, arguments)
    text = "\n".join(getattr(b, "text", "") for b in result.content)
    assert not result.is_error, f"{name} failed: {text}"
    return result.structured_content


async def read(c: Client, uri: str) -> dict:
    contents = (await c.read_resource(uri)).contents
    assert contents[0].mime_type == "application/json"
    return json.loads(contents[0].text)


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def owner(data: Path) -> int | None:
    """The pid in the data directory's owner file (None when nobody serves it)."""
    try:
        text = (data / "baton.owner").read_text()
    except FileNotFoundError:
        return None
    return int(re.search(r"^pid (\d+)$", text, re.M).group(1))


def openers(data: Path) -> set[int]:
    """The processes that have the data directory's database open."""
    db = str(data / "baton.db")
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).startswith(db):
                    pids.add(int(proc.name))
                    break
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return pids


def lock_is_free(data: Path) -> bool:
    with open(data / "baton.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


async def test_the_whole_flow_and_its_data_survive_a_restart(install: Install, tmp_path: Path) -> None:
    data = tmp_path / "data"
    session_key = key("flow")
    async with client(install, "--embedded", "--data-dir", str(data)) as c:
        session = await ok(c, "register_session", {"session_key": session_key, "agent": "planner"})
        assert session["owner"] == "planner"
        entries = [
            {"kind": "ENTRY_KIND_MESSAGE", "role": "user", "author": "planner", "text": "Migrate the schema"},
            {"kind": "ENTRY_KIND_TOOL_CALL", "author": "planner", "text": "ran: ls migrations/"},
        ]
        appended = await ok(c, "update_context", {"session_key": session_key, "entries": entries})
        assert (appended["first_seq"], appended["last_seq"]) == ("1", "2")
        window = await ok(c, "get_context", {"session_key": session_key})
        assert [e["text"] for e in window["entries"]] == ["Migrate the schema", "ran: ls migrations/"]
        handoff = await ok(
            c,
            "request_handoff",
            {"session_key": session_key, "from_agent": "planner", "to_agent": "coder",
             "type": "HANDOFF_TYPE_FULL_HANDOFF", "instructions": "Write the migration"},
        )
        assert handoff["status"] == "HANDOFF_STATUS_PENDING" and handoff["up_to_seq"] == "2"
        accepted = await ok(c, "accept_handoff", {"handoff_id": handoff["handoff_id"], "agent": "coder"})
        assert accepted["status"] == "HANDOFF_STATUS_ACCEPTED"
        context = await read(c, f"baton://sessions/{session_key}/context")
        assert [e["seq"] for e in context["entries"]] == ["1", "2"]
        assert owner(data) is not None and openers(data) == {owner(data)}

    # The client closed stdin: the process stopped, released the directory and closed the store.
    assert released(data)
    async with client(install, "--embedded", "--data-dir", str(data)) as c:
        window = await ok(c, "get_context", {"session_key": session_key})
        assert [e["text"] for e in window["entries"]] == ["Migrate the schema", "ran: ls migrations/"]
        assert (await ok(c, "get_session", {"session_key": session_key}))["owner"] == "coder"
        stored = await read(c, f"baton://handoffs/{handoff['handoff_id']}")
        assert stored["status"] == "HANDOFF_STATUS_ACCEPTED" and stored["instructions"] == "Write the migration"
        listed = await read(c, "baton://sessions")
        assert session_key in [s["session_key"] for s in listed["sessions"]]


async def test_two_processes_share_one_data_directory(install: Install, tmp_path: Path) -> None:
    """The first process serves the directory; the others call it over loopback gRPC (they never
    open the database), and one of them takes over when it exits."""
    data = tmp_path / "data"
    session_key = key("shared")
    args = ("--embedded", "--data-dir", str(data))
    with started(install, data) as first:
        first_owner = owner(data)
        assert first_owner is not None
        async with client(install, *args) as a, client(install, *args) as b:
            await ok(a, "register_session", {"session_key": session_key, "agent": "a"})
            await ok(b, "update_context", {"session_key": session_key, "entries": [
                {"kind": "MESSAGE", "author": "a", "text": "from b"}]})
            await ok(a, "update_context", {"session_key": session_key, "entries": [
                {"kind": "MESSAGE", "author": "a", "text": "from a"}]})
            window = await ok(b, "get_context", {"session_key": session_key})
            assert [e["text"] for e in window["entries"]] == ["from b", "from a"]
            assert owner(data) == first_owner
            assert openers(data) == {first_owner}, "only the owner opens the database"

            # The owner's client leaves: the next call of another process takes the directory over.
            first.stdin.close()
            assert first.wait(timeout=20) == 0
            appended = await ok(a, "update_context", {"session_key": session_key, "entries": [
                {"kind": "MESSAGE", "author": "a", "text": "after the takeover"}]})
            assert appended["last_seq"] == "3"
            new_owner = owner(data)
            assert new_owner not in (None, first_owner)
            assert openers(data) == {new_owner}
            window = await ok(b, "get_context", {"session_key": session_key})
            assert [e["seq"] for e in window["entries"]] == ["1", "2", "3"]
            assert openers(data) == {new_owner}
    assert released(data)


async def test_the_default_data_directory_is_the_users(install: Install, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    session_key = key("home")
    async with client(install, "--embedded", env={"HOME": str(home)}) as c:
        await ok(c, "register_session", {"session_key": session_key, "agent": "a"})
    assert (home / ".local" / "share" / "baton" / "baton.db").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_grpc_addr_shares_the_store_with_other_clients(install: Install, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    session_key = key("grpc")
    async with client(install, "--embedded", "--data-dir", str(tmp_path), "--grpc-addr", endpoint[7:]) as c:
        await ok(c, "register_session", {"session_key": session_key, "agent": "a"})
        # Any gRPC client can use it; here baton-mcp in its remote mode.
        async with client(install, "--endpoint", endpoint) as remote:
            assert (await ok(remote, "get_session", {"session_key": session_key}))["owner"] == "a"


def test_the_embedded_service_is_served_on_loopback_only(install: Install, tmp_path: Path) -> None:
    done = subprocess.run(
        [install.command, "--embedded", "--data-dir", str(tmp_path), "--grpc-addr", "0.0.0.0:0"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "not a loopback address" in done.stderr
    assert not (tmp_path / "baton.db").exists()


@contextmanager
def started(install: Install, data: Path) -> Iterator[subprocess.Popen]:
    """baton-mcp started on stdio and initialized with one request; killed if still running at
    the end."""
    proc = subprocess.Popen(
        [install.command, "--embedded", "--data-dir", str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        proc.stdin.write(json.dumps(INIT).encode() + b"\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["result"]["serverInfo"]["name"] == "baton-mcp"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def released(data: Path) -> bool:
    """Nobody serves the directory, holds its lock or has its database open."""
    return owner(data) is None and lock_is_free(data) and openers(data) == set()


@pytest.mark.parametrize("how", ["stdin-eof", "sigterm"])
def test_it_stops_cleanly(install: Install, tmp_path: Path, how: str) -> None:
    """Closing stdin (the MCP client left) or SIGTERM (through the npm shim too) stops the
    gateway, then the service: exit 0, the directory released, the store closed."""
    with started(install, tmp_path) as proc:
        assert owner(tmp_path) is not None
        if how == "stdin-eof":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM)
        begin = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - begin < 10
    assert released(tmp_path)


async def test_the_readmes_one_line_configs(install: Install, tmp_path: Path) -> None:
    """The README's `uvx` / `npx` client configurations, with the installed command standing in
    for the registry download."""
    readme = (ROOT / "README.md").read_text()
    configs = []
    for block in re.findall(r"```json\n(.*?)```", readme, re.S):
        server = json.loads(block).get("mcpServers", {}).get("baton", {})
        command, args = server.get("command"), server.get("args", [])
        if install.kind == "wheel" and command == "uvx" and args[:1] == ["baton-mcp"]:
            configs.append(args[1:])
        if install.kind == "npm" and command == "npx" and "@baton/mcp" in args:
            configs.append(args[args.index("@baton/mcp") + 1:])
    if not configs:
        pytest.skip(f"the README has no {'uvx' if install.kind == 'wheel' else 'npx'} configuration")
    for args in configs:
        assert "--embedded" in args
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        async with client(install, *args, env={"HOME": str(home)}) as c:
            assert "register_session" in {t.name for t in (await c.list_tools()).tools}
            await ok(c, "register_session", {"session_key": key("readme"), "agent": "a"})
