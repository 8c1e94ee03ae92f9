"""Baton as the task store of an A2A server: :class:`BatonTaskStore`, an a2a-sdk ``TaskStore``.

``pip install "baton-client[a2a]"``, then give the store to the SDK's request handler::

    from a2a.server.request_handlers import DefaultRequestHandler
    from baton.integrations.a2a import BatonTaskStore

    store = BatonTaskStore(target="localhost:50051", api_key="...")
    handler = DefaultRequestHandler(agent_executor=MyExecutor(), task_store=store, agent_card=card)

Every replica of the A2A server that points at the same Baton sees the same tasks, and a task
survives a restart of any of them.

Mapping
-------
- **A task is a Baton session**; each :meth:`~BatonTaskStore.save` appends one entry holding
  the whole ``Task`` (kind ``system``, role ``a2a.task``, ``media_type`` ``application/json``,
  the protobuf JSON of the task as text; the entry's metadata names the task state). The newest
  entry is the task; its ``seq`` is the task's **version**. Older snapshots stay as the task's
  audit trail until a Baton retention policy or compaction removes them. A snapshot must fit
  one entry (1 MiB by default, ``batond --max-entry-bytes``).
- **Scoping.** The SDK's stores scope tasks by owner (``owner_resolver(context)``, by default
  the authenticated user's name); this store scopes by the pair (``context.tenant``, owner), so
  the tasks of one A2A tenant or user are invisible to another: ``get`` answers None,
  ``list`` leaves them out, ``delete`` leaves them alone, and the same task id in two scopes
  names two tasks. The pair is hashed into the session key,
  ``a2a:<scope>:t:<task id>`` (``a2a:<scope>:h:<sha256 of the id>`` when the id has characters a
  Baton key cannot hold or is too long), and into the Baton agent that owns the scope's
  sessions, ``a2a.<scope>``, which is how ``list`` finds them (``ListSessions`` by agent). The
  Baton tenant (the client's ``tenant`` or its API key's) is the outer boundary: stores on
  different Baton tenants share nothing. Use an API key that is not bound to one agent.
- **Optimistic concurrency.** A save appends with ``expected_last_seq`` set to the version the
  saved ``Task`` was derived from, so a save based on a stale version never overwrites a newer
  one: it raises :class:`TaskConflictError`, a subclass of the SDK's
  ``ConcurrentTaskModificationError``, and writes nothing. The store knows that version by the
  object: every ``Task`` that ``get`` returned or ``save`` stored is remembered with its
  version (the newest 1024 objects), and the SDK's ``TaskManager`` always mutates and saves the
  object it read, so each of its saves is checked against exactly the snapshot it started
  from, whatever other readers of the task do meanwhile. A ``Task`` the store has not seen
  (a copy, a new object) is checked against the newest version this store has read or written
  for that task; one it never saw at all must be new (a task that exists already is a
  conflict). A save that moves a task to ``CANCELED`` follows the SDK's rule for versioned
  stores: when the stored task moved on and is not terminal, the cancellation is applied to the
  newest snapshot (its status replaced, its newer history and artifacts kept) instead of
  failing.

  The store is a plain ``TaskStore``, which the handler runs through its
  ``LegacyTaskStoreAdapter``; the version bookkeeping that the SDK's ``VersionedTaskStore``
  leaves to the handler is done here. In a normal run nothing conflicts: the handler keeps one
  active task per task id and replica, whose consumer is the only writer; it reads the task
  when a request starts and then saves the same object after every event. When another replica
  or writer did move the task (a cancel, a message handled elsewhere at the same time), the
  consumer's next save raises ``ConcurrentTaskModificationError``, which the SDK handles
  itself: it reloads the task and applies the event again, or stops the agent when the task
  became terminal.
- **Retries.** Every append carries an idempotency key derived from its base version and its
  content, so neither the client's retries (UNAVAILABLE, a restart of ``batond``) nor the same
  change saved again from the same version stores a snapshot twice. Session creation and deletion, which the
  client does not retry on UNAVAILABLE, are retried here (creating twice or deleting a deleted
  session is harmless).
- ``delete`` erases the session (``DeleteSession``); ``list`` reads the newest snapshot of each
  of the scope's tasks (one call each, eight at a time) and filters, sorts and pages them
  exactly as the SDK's ``InMemoryTaskStore`` does, page tokens included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from typing import Any, Awaitable, Callable, List, Optional, Tuple, TypeVar

from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.inmemory_task_store import InMemoryTaskStore
from a2a.server.tasks.task_store import TaskStore
from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task, TaskState
from google.protobuf import json_format

from baton import AsyncClient, BatonError
from baton.integrations._owned import OwnsClient

__all__ = ["BatonTaskStore", "TaskConflictError"]

_ROLE = "a2a.task"
_MEDIA_TYPE = "application/json"
_KEY_PREFIX = "a2a:"
_AGENT_PREFIX = "a2a."
_KEY_CHARS = re.compile(r"[A-Za-z0-9._:@-]+")
_MAX_KEY = 128
_TRACKED_OBJECTS = 1024
_KNOWN_VERSIONS = 65536
_LIST_CONCURRENCY = 8
_LIST_PAGE = 1000
# The largest token budget batond accepts: a window of one entry is never cut for its size.
_WINDOW_TOKENS = 2**31 - 1
_TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
    }
)

T = TypeVar("T")


class TaskConflictError(ConcurrentTaskModificationError):
    """A save based on a stale version of a task, refused without writing anything.

    The SDK's request handler catches it (as ``ConcurrentTaskModificationError``), reloads the
    task and applies its event again. Other callers should ``get`` the task, redo their change
    on it and save that.

    Attributes:
        task_id: The task.
        session_key: The Baton session holding it.
        expected_version: The version the saved task was based on (0: a new task).
    """

    def __init__(self, task_id: str, session_key: str, expected_version: int, reason: str) -> None:
        super().__init__(task_id)
        self.session_key = session_key
        self.expected_version = expected_version
        self.args = (
            f"task {task_id!r} (Baton session {session_key!r}) was modified concurrently: "
            f"the save was based on version {expected_version}; {reason}",
        )


class BatonTaskStore(OwnsClient, TaskStore):
    """The a2a-sdk ``TaskStore`` on Baton: tasks shared by every replica, kept across restarts.

    Args:
        client: A :class:`baton.AsyncClient` to use (the caller keeps it and closes it). When
            None, the store makes its own on first use, in the event loop that uses it, from
            ``target`` and ``client_kwargs``, and :meth:`close` closes it.
        target: ``host:port`` of batond for the store's own client (default: the
            ``BATON_TARGET`` environment variable, else ``localhost:50051``).
        owner_resolver: The owner of a call, as in the SDK's stores (default: the user's name).
        **client_kwargs: Further :class:`baton.AsyncClient` arguments (``tenant``, ``api_key``,
            ``tls``, ``timeout``, ``retry``).
    """

    def __init__(
        self,
        client: Optional[AsyncClient] = None,
        *,
        target: Optional[str] = None,
        owner_resolver: OwnerResolver = resolve_user_scope,
        **client_kwargs: Any,
    ) -> None:
        if client is not None and (target is not None or client_kwargs):
            raise TypeError("give either a client or target/client arguments, not both")
        self._hold_client(client, target, client_kwargs)
        self.owner_resolver = owner_resolver
        # id(task) -> (task, session key, version): the Task objects this store handed out or
        # stored, held so that their ids stay theirs (protobuf messages take no weak references).
        self._tracked: OrderedDict[int, Tuple[Task, str, int]] = OrderedDict()
        # session key -> the newest version this store read or wrote.
        self._versions: OrderedDict[str, int] = OrderedDict()

    # --- TaskStore ------------------------------------------------------------------------

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Stores ``task`` as its newest version, in the caller's scope.

        Raises:
            TaskConflictError: The task changed since the version ``task`` was based on (or
                was deleted, or exists although this store never saw it); nothing was written.
            baton.BatonError: Baton refused the call (e.g. the snapshot is larger than an
                entry may be) or could not be reached.
        """
        scope = self._scope(context)
        key = _session_key(scope, task.id)
        base = self._base_version(task, key)
        try:
            if base is None:
                await self._create_session(key, scope, task)
                version = await self._append(key, scope, task, 0)
            else:
                version = await self._append(key, scope, task, base)
        except TaskConflictError:
            if task.status.state != TaskState.TASK_STATE_CANCELED:
                raise
            await self._cancel_newest(key, scope, task)
            return
        self._track(task, key, version)

    async def get(self, task_id: str, context: ServerCallContext) -> Optional[Task]:
        """The newest version of a task in the caller's scope, or None."""
        key = self.session_key(task_id, context)
        found = await self._read(key)
        if found is None:
            self._forget(key)
            return None
        task, version = found
        self._track(task, key, version)
        return task

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        """The caller's tasks, filtered, sorted and paged as the SDK's in-memory store does."""
        scope = self._scope(context)
        prefix = f"{_KEY_PREFIX}{scope}:"
        keys: List[str] = []
        token = ""
        while True:
            page = await self.client.list_sessions(agent=_AGENT_PREFIX + scope, page_size=_LIST_PAGE, page_token=token)
            for s in page.sessions:
                if not s.session_key.startswith(prefix) or s.last_seq == 0:
                    continue
                if params.context_id and _meta_context_id(s.metadata) not in ("", params.context_id):
                    continue
                keys.append(s.session_key)
            token = page.next_page_token
            if not token:
                break

        limit = asyncio.Semaphore(_LIST_CONCURRENCY)

        async def read(key: str) -> Optional[Tuple[Task, int]]:
            async with limit:
                return await self._read(key)

        # The filters, the order and the page tokens are the SDK's own: the scope's tasks go
        # through an InMemoryTaskStore, so both stores answer a ListTasksRequest alike.
        window = InMemoryTaskStore(owner_resolver=_one_owner, use_copying=False)
        for found in await asyncio.gather(*(read(k) for k in keys)):
            if found is not None:
                await window.save(found[0], context)
        return await window.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Erases a task of the caller's scope, all its versions included (no-op if absent)."""
        key = self.session_key(task_id, context)
        try:
            await self._retry_unavailable(lambda: self.client.delete_session(session_key=key))
        except BatonError as e:
            if e.code != "NOT_FOUND":
                raise
        self._forget(key)

    # --- mapping --------------------------------------------------------------------------

    def session_key(self, task_id: str, context: ServerCallContext) -> str:
        """The key of the Baton session that holds a task of the caller's scope."""
        return _session_key(self._scope(context), task_id)

    def _scope(self, context: ServerCallContext) -> str:
        owner = self.owner_resolver(context)
        ident = json.dumps([context.tenant, owner], ensure_ascii=False).encode()
        return hashlib.sha256(ident).hexdigest()[:32]

    async def _read(self, key: str) -> Optional[Tuple[Task, int]]:
        try:
            window = await self.client.get_context_window(session_key=key, max_entries=1, max_tokens=_WINDOW_TOKENS)
        except BatonError as e:
            if e.code == "NOT_FOUND":
                return None
            raise
        if not window.entries:
            return None  # created, first snapshot not written (yet)
        entry = window.entries[-1]
        task = json_format.Parse(entry.text, Task(), ignore_unknown_fields=True)
        return task, entry.seq

    async def _create_session(self, key: str, scope: str, task: Task) -> None:
        meta = {"a2a": {"task_id": task.id, "context_id": task.context_id}}
        try:
            await self._retry_unavailable(
                lambda: self.client.create_session(session_key=key, agent=_AGENT_PREFIX + scope, metadata=meta)
            )
        except BatonError as e:
            # Made by another writer, or by an attempt whose answer was lost: the append with
            # expected_last_seq=0 decides who writes the first version.
            if e.code != "ALREADY_EXISTS":
                raise

    async def _append(self, key: str, scope: str, task: Task, base: int) -> int:
        text = json_format.MessageToJson(task, indent=None, sort_keys=True)
        entry = {
            "kind": "system",
            "role": _ROLE,
            "author": _AGENT_PREFIX + scope,
            "text": text,
            "media_type": _MEDIA_TYPE,
            "metadata": {"state": TaskState.Name(task.status.state)},
        }
        digest = hashlib.sha256(text.encode()).hexdigest()[:40]
        try:
            result = await self.client.append_entries(
                session_key=key,
                entries=[entry],
                idempotency_key=f"a2a:{base}:{digest}",
                expected_last_seq=base,
            )
        except BatonError as e:
            if e.code == "NOT_FOUND":
                raise TaskConflictError(task.id, key, base, "the task was deleted") from e
            if e.code == "FAILED_PRECONDITION" and _seq_mismatch(e):
                reason = "it exists already" if base == 0 else "a newer version is stored"
                raise TaskConflictError(task.id, key, base, reason) from e
            raise
        return result.last_seq

    async def _cancel_newest(self, key: str, scope: str, task: Task) -> None:
        """Applies a cancellation to the newest snapshot, as long as that one is not terminal."""
        while True:
            found = await self._read(key)
            if found is None or found[0].status.state in _TERMINAL:
                raise TaskConflictError(
                    task.id, key, self._base_version(task, key) or 0, "it was deleted or has ended meanwhile"
                )
            newest, version = found
            newest.status.CopyFrom(task.status)
            try:
                saved = await self._append(key, scope, newest, version)
            except TaskConflictError:
                continue
            # `task` itself still lacks what the newest snapshot added: it stays at its old
            # version, so a later save of it cannot drop that.
            self._track(newest, key, saved)
            return

    # --- versions of the Task objects seen ------------------------------------------------

    def _base_version(self, task: Task, key: str) -> Optional[int]:
        hit = self._tracked.get(id(task))
        if hit is not None and hit[0] is task and hit[1] == key:
            return hit[2]
        return self._versions.get(key)

    def _track(self, task: Task, key: str, version: int) -> None:
        self._tracked[id(task)] = (task, key, version)
        self._tracked.move_to_end(id(task))
        while len(self._tracked) > _TRACKED_OBJECTS:
            self._tracked.popitem(last=False)
        self._versions[key] = version
        self._versions.move_to_end(key)
        while len(self._versions) > _KNOWN_VERSIONS:
            self._versions.popitem(last=False)

    def _forget(self, key: str) -> None:
        self._versions.pop(key, None)
        for ident in [i for i, (_, k, _) in self._tracked.items() if k == key]:
            del self._tracked[ident]

    async def _retry_unavailable(self, call: Callable[[], Awaitable[T]]) -> T:
        """Runs a write the client does not retry on UNAVAILABLE (it may have been applied
        before the answer was lost), retrying it on UNAVAILABLE: only for writes whose repeat is
        harmless or detected (ALREADY_EXISTS, NOT_FOUND)."""
        policy = self.client.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except BatonError as e:
                if e.code != "UNAVAILABLE" or attempt >= policy.max_attempts:
                    raise
            await asyncio.sleep(policy.backoff(attempt))


def _session_key(scope: str, task_id: str) -> str:
    key = f"{_KEY_PREFIX}{scope}:t:{task_id}"
    if len(key) <= _MAX_KEY and _KEY_CHARS.fullmatch(task_id):
        return key
    return f"{_KEY_PREFIX}{scope}:h:{hashlib.sha256(task_id.encode()).hexdigest()}"


def _seq_mismatch(err: BatonError) -> bool:
    return any(getattr(v, "type", "") == "SEQ_MISMATCH" for d in err.details for v in getattr(d, "violations", ()))


def _meta_context_id(metadata: Any) -> str:
    a2a = metadata.fields.get("a2a")
    if a2a is None or not a2a.HasField("struct_value"):
        return ""
    value = a2a.struct_value.fields.get("context_id")
    return "" if value is None else str(value.string_value)


def _one_owner(context: ServerCallContext) -> str:
    return ""
