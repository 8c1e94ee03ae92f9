"""Baton as the session store of Google ADK: :class:`BatonSessionService`, a
``google.adk.sessions.BaseSessionService`` (``pip install "baton-client[adk]"``)::

    from google.adk.runners import Runner
    from baton.integrations.adk import BatonSessionService

    sessions = BatonSessionService(target="localhost:50051")
    runner = Runner(agent=root_agent, app_name="weather", session_service=sessions)

How ADK's model maps onto Baton (all in the client's tenant):

- **One Baton session per ADK session.** Its key is derived from ``(app_name, user_id,
  session_id)``: a readable prefix plus a hash of the exact triple (``adk:<app>:<user>:<id>:<hash>``),
  so any id ADK or the caller picks fits Baton's key rules. The session's metadata holds the exact
  ``app_name``, ``user_id`` and ``session_id``, the creation time and the initial session-scoped
  state (as JSON text, so numbers keep their type; 64 KiB at most). Sessions are created by the
  ``agent`` given to the service, or else by an agent named after the app, and ``list_sessions``
  pages through that agent's sessions (``ListSessions``) keeping those of the app (and user).
- **One entry per event.** The entry's text is the event's JSON exactly as pydantic writes it
  (``model_dump_json(exclude_none=True)``, the form DatabaseSessionService stores), media type
  ``application/json``; its kind is TOOL_CALL / TOOL_RESULT / MESSAGE after the event's parts, its
  author the event's author (or the service's ``agent`` when one is given, for keys bound to an
  agent). Events come back in seq order; a session's state is its initial state folded with every
  event's session-scoped ``state_delta``; ``last_update_time`` is the newest event's timestamp.
- **Appends never lose or reorder events.** ``append_event`` writes one entry with
  ``expected_last_seq`` = the seq the ``Session`` object was read or last written at (kept in the
  session's storage marker, as DatabaseSessionService keeps its revision there). Appends through
  one service to one session are serialized by a per-session lock and each advances the marker, so
  concurrent appends sharing a ``Session`` object (parallel branches of an invocation) all land, in
  the order they took the lock. A ``Session`` that another writer (another replica, another
  ``get_session``) has overtaken fails with ``StaleSessionError`` and nothing is written, the
  check DatabaseSessionService makes: reload it and retry. The idempotency key is a hash of the
  event's JSON, so a retried append (the client's own retries across a ``batond`` restart, or the
  caller re-delivering an equal event) is stored once, and an event this ``Session`` already holds
  is not applied twice.
- **State scopes as ADK defines them.** ``temp:`` keys are applied to the in-memory session and
  never stored. ``app:`` state lives in one Baton session per app and ``user:`` state in one per
  app and user; each of their entries is a full snapshot of that scope, written by
  compare-and-swap (read the newest snapshot, merge the delta, append with
  ``expected_last_seq``, start over on a mismatch), so concurrent writers never lose each other's
  keys; reading a scope is one ``GetContextWindow`` of the newest entry. Old snapshots are compacted
  away now and then. A scope delta is written right after its event, so an event refused as stale
  changes no shared state; a process that dies between the two writes leaves the event without its
  app/user delta.

Sessions whose entries were compacted cannot be read back here (their state is the fold of all
their events); events must fit Baton's entry limit (1 MiB by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
import weakref
from typing import Any, Dict, List, Optional, Tuple

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.session import Session
from google.adk.sessions.state import State
from google.protobuf import json_format
from pydantic_core import to_jsonable_python

from baton import AsyncClient, BatonError
from baton.integrations._owned import OwnsClient
from baton.v1 import common_pb2

__all__ = ["BatonSessionService"]

_JSON = "application/json"
_MARKER = "baton:"
# Field markers in metadata: what a Baton session or entry is to this adapter.
_META = "adk"
_EVENT_META = "adk_event"
_PAGE = 1000
_MAX_TOKENS = 2**31 - 1
# A scope session is compacted whenever its newest snapshot's seq is a multiple of this.
_COMPACT_EVERY = 64
_MAX_CAS_ROUNDS = 1000
_READ_CONCURRENCY = 8
_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9._:@-]")

StateDict = Dict[str, Any]


def _clip(value: str, n: int) -> str:
    return _NOT_KEY_CHARS.sub("_", value)[:n] or "_"


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def _session_key(app_name: str, user_id: str, session_id: str) -> str:
    h = _digest("session", app_name, user_id, session_id)
    return f"adk:{_clip(app_name, 24)}:{_clip(user_id, 24)}:{_clip(session_id, 40)}:{h}"


def _app_key(app_name: str) -> str:
    return f"adk-app:{_clip(app_name, 64)}:{_digest('app', app_name)}"


def _user_key(app_name: str, user_id: str) -> str:
    return f"adk-user:{_clip(app_name, 32)}:{_clip(user_id, 48)}:{_digest('user', app_name, user_id)}"


def _split_state(state: StateDict) -> Tuple[StateDict, StateDict, StateDict]:
    """(app, user, session) parts of a state or state delta, prefixes removed from the first two;
    ``temp:`` keys are dropped."""
    app: StateDict = {}
    user: StateDict = {}
    own: StateDict = {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key[len(State.APP_PREFIX) :]] = value
        elif key.startswith(State.USER_PREFIX):
            user[key[len(State.USER_PREFIX) :]] = value
        elif not key.startswith(State.TEMP_PREFIX):
            own[key] = value
    return app, user, own


def _json_safe(state: StateDict) -> StateDict:
    """The JSON form of a state, as ADK's persistent services store it (values without one
    become their repr)."""
    safe = to_jsonable_python(state, fallback=repr)
    return dict(safe) if isinstance(safe, dict) else {}


def _merge(own: StateDict, app: StateDict, user: StateDict) -> StateDict:
    merged = dict(own)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


def _meta(s: common_pb2.Session) -> Dict[str, Any]:
    meta = json_format.MessageToDict(s.metadata).get(_META)
    return meta if isinstance(meta, dict) else {}


def _is_stale(err: BatonError) -> bool:
    if err.code != "FAILED_PRECONDITION":
        return False
    for detail in err.details:
        for violation in getattr(detail, "violations", ()):
            if getattr(violation, "type", "") == "SEQ_MISMATCH":
                return True
    return False


def _event_entry(event: Event, text: str, author: str) -> Dict[str, Any]:
    parts = event.content.parts if event.content and event.content.parts else []
    if any(p.function_call for p in parts):
        kind = "tool_call"
    elif any(p.function_response for p in parts):
        kind = "tool_result"
    else:
        kind = "message"
    role = (event.content.role if event.content else None) or ("user" if event.author == "user" else "model")
    metadata: Dict[str, Any] = {_EVENT_META: event.id}
    if event.invocation_id:
        metadata["adk_invocation"] = event.invocation_id
    return {"kind": kind, "role": role, "author": author, "text": text, "media_type": _JSON, "metadata": metadata}


def _event_of(entry: common_pb2.Entry) -> Optional[Event]:
    """The ADK event an entry holds; None for a redacted entry or one this adapter did not write."""
    if entry.redacted or entry.media_type != _JSON or _EVENT_META not in entry.metadata.fields:
        return None
    return Event.model_validate_json(entry.text)


class _Stored:
    """An ADK session as read from Baton: its events in seq order, its session-scoped state and
    the seq it was read at."""

    def __init__(self, meta: Dict[str, Any], entries: List[common_pb2.Entry]) -> None:
        self.state: StateDict = json.loads(meta.get("state") or "{}")
        self.events: List[Event] = []
        self.last_seq = entries[-1].seq if entries else 0
        self.last_update_time = float(meta.get("create_time") or 0.0)
        for entry in entries:
            event = _event_of(entry)
            if event is None:
                continue
            if event.actions and event.actions.state_delta:
                self.state.update(_split_state(event.actions.state_delta)[2])
            self.events.append(event)
            self.last_update_time = event.timestamp


class BatonSessionService(OwnsClient, BaseSessionService):
    """A Google ADK session service that keeps sessions, events and state in Baton.

    Args:
        client: A :class:`baton.AsyncClient`; the caller keeps owning it. When None, the service
            makes one from ``target`` and ``client_kwargs`` (``tenant``, ``api_key``, ``tls``,
            ``timeout``, ``retry``...) on first use, inside the running event loop, and closes it
            in :meth:`close`.
        target: ``host:port`` of ``batond`` when no client is given.
        agent: The Baton agent that creates the sessions and authors the entries. None: sessions
            are created by an agent named after the ADK app and each entry's author is its
            event's author. Give it when the API key is bound to one agent.
    """

    def __init__(
        self,
        client: Optional[AsyncClient] = None,
        *,
        target: Optional[str] = None,
        agent: Optional[str] = None,
        **client_kwargs: Any,
    ) -> None:
        if client is None and target is None:
            raise ValueError("BatonSessionService needs a client or a target")
        if client is not None and (target is not None or client_kwargs):
            raise ValueError("give either a client or a target with client options, not both")
        self._hold_client(client, target, client_kwargs)
        self._agent = agent
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- lifecycle ------------------------------------------------------------------------

    # --- BaseSessionService ---------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: Optional[Dict[str, Any]] = None,
        session_id: Optional[str] = None,
    ) -> Session:
        session_id = (session_id.strip() if session_id else "") or platform_uuid.new_uuid()
        app_delta, user_delta, own = _split_state(_json_safe(state or {}))
        now = platform_time.get_time()
        nonce = uuid.uuid4().hex
        meta = {
            "type": "session",
            "app_name": app_name,
            "user_id": user_id,
            "session_id": session_id,
            "create_time": now,
            "state": json.dumps(own),
            "nonce": nonce,
        }
        created = await self._create(_session_key(app_name, user_id, session_id), app_name, meta, nonce)
        if not created:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        app_state, user_state = await asyncio.gather(
            self._write_scope(_app_key(app_name), app_name, {"type": "app", "app_name": app_name}, app_delta),
            self._write_scope(
                _user_key(app_name, user_id),
                app_name,
                {"type": "user", "app_name": app_name, "user_id": user_id},
                user_delta,
            ),
        )
        session = Session(
            app_name=app_name,
            user_id=user_id,
            id=session_id,
            state=_merge(own, app_state, user_state),
            last_update_time=now,
        )
        session._storage_update_marker = f"{_MARKER}0"
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: Optional[GetSessionConfig] = None,
    ) -> Optional[Session]:
        session_id = session_id.strip() if session_id else session_id
        stored, app_state, user_state = await asyncio.gather(
            self._read_session(app_name, user_id, session_id),
            self._read_scope(_app_key(app_name)),
            self._read_scope(_user_key(app_name, user_id)),
        )
        if stored is None:
            return None
        events = stored.events
        if config is not None:
            if config.after_timestamp is not None:
                after = config.after_timestamp
                events = [e for e in events if e.timestamp >= after]
            if config.num_recent_events is not None:
                n = config.num_recent_events
                events = events[-n:] if n > 0 else []
        session = Session(
            app_name=app_name,
            user_id=user_id,
            id=session_id,
            state=_merge(stored.state, app_state[0], user_state[0]),
            events=events,
            last_update_time=stored.last_update_time,
        )
        session._storage_update_marker = f"{_MARKER}{stored.last_seq}"
        return session

    async def list_sessions(self, *, app_name: str, user_id: Optional[str] = None) -> ListSessionsResponse:
        found: List[Dict[str, Any]] = []
        token = ""
        while True:
            page = await self.client.list_sessions(agent=self._owner(app_name), page_size=_PAGE, page_token=token)
            for s in page.sessions:
                meta = _meta(s)
                if (
                    meta.get("type") == "session"
                    and meta.get("app_name") == app_name
                    and (user_id is None or meta.get("user_id") == user_id)
                ):
                    found.append(meta)
            token = page.next_page_token
            if not token:
                break
        users = sorted({str(m["user_id"]) for m in found})
        limit = asyncio.Semaphore(_READ_CONCURRENCY)

        async def read(meta: Dict[str, Any]) -> Optional[_Stored]:
            async with limit:
                return await self._read_session(meta["app_name"], meta["user_id"], meta["session_id"])

        app_state, user_states, stored = await asyncio.gather(
            self._read_scope(_app_key(app_name)),
            asyncio.gather(*(self._read_scope(_user_key(app_name, u)) for u in users)),
            asyncio.gather(*(read(m) for m in found)),
        )
        user_state = {u: s[0] for u, s in zip(users, user_states)}
        sessions = [
            Session(
                app_name=app_name,
                user_id=meta["user_id"],
                id=meta["session_id"],
                state=_merge(st.state, app_state[0], user_state[meta["user_id"]]),
                last_update_time=st.last_update_time,
            )
            for meta, st in zip(found, stored)
            if st is not None
        ]
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        session_id = session_id.strip() if session_id else session_id
        key = _session_key(app_name, user_id, session_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.client.delete_session(session_key=key)
                return
            except BatonError as err:
                if err.code == "NOT_FOUND":
                    return  # never existed, or a lost answer hid our own delete
                if not self._retry_unavailable(err, attempt):
                    raise
            await asyncio.sleep(self.client.retry.backoff(attempt))

    async def get_user_state(self, *, app_name: str, user_id: str) -> Dict[str, Any]:
        return (await self._read_scope(_user_key(app_name, user_id)))[0]

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        key = _session_key(session.app_name, session.user_id, session.id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            expected = await self._expected_seq(session, key)
            text = event.model_dump_json(exclude_none=True)
            author = self._agent or _clip(event.author or "adk", 128)
            try:
                written = await self.client.append_entries(
                    session_key=key,
                    entries=[_event_entry(event, text, author)],
                    idempotency_key=f"adk-event:{hashlib.sha256(text.encode()).hexdigest()[:48]}",
                    expected_last_seq=expected,
                )
            except BatonError as err:
                if err.code == "NOT_FOUND":
                    raise SessionNotFoundError(f"Session {session.id} not found.") from err
                if _is_stale(err):
                    raise StaleSessionError(
                        "The session has been modified in Baton since it was loaded. "
                        "Please reload the session before appending more events."
                    ) from err
                raise
            if written.first_seq <= expected:
                # Stored earlier (the idempotency key matched) and already part of what this
                # Session object reflects: nothing to apply again.
                return event
            session._storage_update_marker = f"{_MARKER}{written.last_seq}"
            session.last_update_time = event.timestamp
            if event.actions and event.actions.state_delta:
                app_delta, user_delta, _ = _split_state(event.actions.state_delta)
                app_meta = {"type": "app", "app_name": session.app_name}
                user_meta = {"type": "user", "app_name": session.app_name, "user_id": session.user_id}
                await asyncio.gather(
                    self._write_scope(_app_key(session.app_name), session.app_name, app_meta, app_delta),
                    self._write_scope(
                        _user_key(session.app_name, session.user_id), session.app_name, user_meta, user_delta
                    ),
                )
            self._update_session_state(session, event)
            session.events.append(event)
        return event

    # --- sessions -------------------------------------------------------------------------

    def _owner(self, app_name: str) -> str:
        return self._agent or _clip(app_name, 128)

    def _retry_unavailable(self, err: BatonError, attempt: int) -> bool:
        """Whether a create or delete, which the client does not retry on UNAVAILABLE (its answer
        may have been lost after the change was made), should be tried again here."""
        return err.code == "UNAVAILABLE" and attempt < self.client.retry.max_attempts

    async def _create(self, key: str, app_name: str, meta: Dict[str, Any], nonce: Optional[str]) -> bool:
        """Creates a Baton session; False when the key is taken (by someone else: with a
        ``nonce``, a session carrying it is ours, created by an attempt whose answer was lost)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.client.create_session(session_key=key, agent=self._owner(app_name), metadata={_META: meta})
                return True
            except BatonError as err:
                if err.code == "ALREADY_EXISTS":
                    if attempt == 1 or nonce is None:
                        return False
                    existing = await self.client.get_session(session_key=key)
                    return bool(_meta(existing).get("nonce") == nonce)
                if not self._retry_unavailable(err, attempt):
                    raise
            await asyncio.sleep(self.client.retry.backoff(attempt))

    async def _read_session(self, app_name: str, user_id: str, session_id: str) -> Optional[_Stored]:
        key = _session_key(app_name, user_id, session_id)
        try:
            s = await self.client.get_session(session_key=key)
            entries: List[common_pb2.Entry] = []
            token = ""
            while True:
                page = await self.client.list_entries(session_key=key, page_size=_PAGE, page_token=token)
                entries.extend(page.entries)
                token = page.next_page_token
                if not token:
                    break
        except BatonError as err:
            if err.code == "NOT_FOUND":
                return None
            raise
        meta = _meta(s)
        if (meta.get("type"), meta.get("app_name"), meta.get("user_id"), meta.get("session_id")) != (
            "session",
            app_name,
            user_id,
            session_id,
        ):
            return None
        return _Stored(meta, entries)

    async def _expected_seq(self, session: Session, key: str) -> int:
        """The seq ``session`` reflects. A session this service did not load or create has no
        marker: like DatabaseSessionService, it is taken as current while Baton has nothing newer
        than its ``last_update_time`` or its newest event is Baton's newest."""
        marker = session._storage_update_marker
        if marker is not None and marker.startswith(_MARKER):
            return int(marker[len(_MARKER) :])
        try:
            s = await self.client.get_session(session_key=key)
            last = (
                await self.client.list_entries(session_key=key, after_seq=s.last_seq - 1, page_size=1)
                if s.last_seq
                else None
            )
        except BatonError as err:
            if err.code == "NOT_FOUND":
                raise SessionNotFoundError(f"Session {session.id} not found.") from err
            raise
        newest = _event_of(last.entries[-1]) if last is not None and last.entries else None
        stored_time = newest.timestamp if newest is not None else float(_meta(s).get("create_time") or 0.0)
        if s.last_seq and stored_time > session.last_update_time:
            if newest is None or not session.events or session.events[-1].id != newest.id:
                raise StaleSessionError(
                    "The session has been modified in Baton since it was loaded. "
                    "Please reload the session before appending more events."
                )
        return int(s.last_seq)

    # --- app and user scopes --------------------------------------------------------------

    async def _read_scope(self, key: str) -> Tuple[StateDict, Optional[int]]:
        """The newest snapshot of a scope and its seq (None: the scope's session does not exist)."""
        try:
            window = await self.client.get_context_window(session_key=key, max_entries=1, max_tokens=_MAX_TOKENS)
        except BatonError as err:
            if err.code == "NOT_FOUND":
                return {}, None
            raise
        state: StateDict = {}
        if window.entries and not window.entries[-1].redacted:
            state = json.loads(window.entries[-1].text)
        return state, int(window.last_seq)

    async def _write_scope(self, key: str, app_name: str, meta: Dict[str, Any], delta: StateDict) -> StateDict:
        """Merges ``delta`` into a scope by compare-and-swap; returns the scope's state after it."""
        if not delta:
            return (await self._read_scope(key))[0]
        for _ in range(_MAX_CAS_ROUNDS):
            state, seq = await self._read_scope(key)
            if seq is None:
                await self._create(key, app_name, meta, None)
                continue
            state.update(delta)
            try:
                written = await self.client.append_entries(
                    session_key=key,
                    entries=[
                        {
                            "kind": "system",
                            "author": self._owner(app_name),
                            "text": json.dumps(state),
                            "media_type": _JSON,
                        }
                    ],
                    expected_last_seq=seq,
                )
            except BatonError as err:
                if _is_stale(err):
                    continue
                raise
            if written.last_seq % _COMPACT_EVERY == 0:
                try:
                    await self.client.compact_session(session_key=key, before_seq=written.last_seq)
                except BatonError:
                    pass  # compaction only saves space; a refused one (legal hold...) changes nothing
            return state
        raise StaleSessionError(f"could not update {key!r}: too many concurrent writers")
