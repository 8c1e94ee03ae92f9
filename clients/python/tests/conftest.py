"""Fixtures: a real batond (the locally built binary named by BATOND_BIN) on the embedded store,
on free loopback ports, that tests can restart on the same port; and a TCP proxy that can drop
a connection after the server answered, before the answer reaches the client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Batond:
    """One batond process on fixed loopback ports and its own data directory."""

    def __init__(self, workdir: Path, env: Optional[Dict[str, str]] = None, args: Sequence[str] = ()) -> None:
        binary = os.environ.get("BATOND_BIN")
        if not binary or not os.access(binary, os.X_OK):
            raise RuntimeError("BATOND_BIN must name the built batond binary (scripts/test clients-python sets it)")
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.admin_port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self.extra_env = dict(env or {})
        self.extra_args = list(args)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.setdefault("RUST_LOG", "warn")
        env.update(self.extra_env)
        self.starts += 1
        log = open(self.workdir / f"batond-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--grpc-addr",
                self.target,
                "--admin-addr",
                f"127.0.0.1:{self.admin_port}",
                "--data-dir",
                str(self.data_dir),
                "--shutdown-grace-secs",
                "2",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"batond exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"batond did not become ready: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / f"batond-{self.starts}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture(scope="session")
def server() -> Iterator[Batond]:
    """A batond shared by the tests that do not restart it."""
    workdir = Path(tempfile.mkdtemp(prefix="baton-py-"))
    srv = Batond(workdir)
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def own_server(tmp_path: Path) -> Iterator[Batond]:
    """A batond of the test's own, which the test may restart."""
    srv = Batond(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suite with scripts/test clients-python (it makes the services)")
    return value


@pytest.fixture(scope="session")
def replica_server() -> Iterator[Batond]:
    """A batond on the test PostgreSQL (serving role, under row-level security: tests use a
    tenant of their own) that reads from the held-back read replica scripts/test makes
    (BATON_TEST_READ_REPLICA_URL): a read the replica serves misses every write made after the
    replica was, so a read that does not carry the client's log position sees none of them."""
    env = {
        "DATABASE_URL": _required_env("BATON_TEST_APP_DATABASE_URL"),
        "BATON_MIGRATE_DATABASE_URL": _required_env("BATON_TEST_DATABASE_URL"),
        "DATABASE_READ_URL": _required_env("BATON_TEST_READ_REPLICA_URL"),
    }
    workdir = Path(tempfile.mkdtemp(prefix="baton-py-replica-"))
    srv = Batond(workdir, env=env, args=["--read-replica-max-lag-ms", "3600000"])
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)


class DropProxy:
    """A TCP proxy in front of batond. Armed with a condition, it swallows the next bytes the
    server sends, waits until the condition holds (the server did the work), then closes the
    connection on both sides: the client's call loses its answer. It drops once per arming."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.dropped = 0
        self._armed: Optional[Callable[[], bool]] = None
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, stored: Callable[[], bool]) -> None:
        with self._lock:
            self._armed = stored

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._socks:
            _close(s)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.connections += 1
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server:
                    with self._lock:
                        cond, self._armed = self._armed, None
                    if cond is not None:
                        deadline = time.monotonic() + 20
                        while not cond() and time.monotonic() < deadline:
                            time.sleep(0.02)
                        self.dropped += 1
                        break
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture()
def drop_proxy(server: Batond) -> Iterator[DropProxy]:
    proxy = DropProxy(server.port)
    yield proxy
    proxy.close()


def run_in_thread(fn: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
