"""Baton as the durable, shared session store of the OpenAI Agents SDK.

``BatonSession`` implements the SDK's ``Session`` protocol (``agents.memory.Session``)::

    from agents import Agent, Runner
    from baton.integrations.openai_agents import BatonSession

    session = BatonSession("user-42", target="localhost:50051")
    result = await Runner.run(Agent(name="assistant"), "Hello", session=session)

**Mapping.** One SDK session is one Baton session. Its key is ``session_id`` itself when that is a
valid Baton key (ASCII letters, digits and ``. _ : @ -``, at most 128 characters), else
``oai-sha256-`` and the SHA-256 of the id (``BatonSession.session_key``). The session is created
on the first ``add_items``, owned by ``agent``; creation is race-safe because the key is chosen by
the caller: whoever loses the race gets ALREADY_EXISTS, which means the session is there. Each item
is one entry whose text is the item's JSON (media type :data:`ITEM_MEDIA_TYPE`), so ``get_items``
returns exactly what was added; the entry's kind and role follow the item: messages are MESSAGE
(SYSTEM for ``system`` and ``developer`` messages) with the message's role, ``*_call`` items
TOOL_CALL with role ``assistant``, ``*_output`` items TOOL_RESULT with role ``tool``, anything else
(reasoning, ...) MESSAGE with the item's role or ``assistant``. The author of every entry is
``agent``. Entries of other media types (written by other Baton clients) are not items and are
left alone.

**Idempotency.** ``add_items`` is one AppendEntries (split only beyond 1000 items, the limit of a
batch) with an idempotency key drawn once per call and sent explicitly, so every client-level retry
(UNAVAILABLE, a connection lost before the answer, a restarting batond) carries the same key and
the batch is stored once. When the call still fails, the session keeps that key with a fingerprint
of the batch: the next ``add_items`` of the same batch (the application or the SDK retrying the
failed call) reuses it, so an append that was in fact stored is not stored again. Any other batch
gets a fresh key. (A run resumed in another process is reconciled by the SDK itself, which compares
the session's tail with its pending batch.)

**pop_item** retracts the newest item with RedactEntries: it reads the session's ``last_seq`` and
its newest live item (seq ``s``), then redacts ``[s]`` with ``expected_last_seq=last_seq`` and a
reason unique to the call. The store checks ``expected_last_seq`` under the session's lock, the
same lock appends take, so an ``add_items`` that lands between the read and the redaction makes it
fail with FAILED_PRECONDITION and change nothing; ``pop_item`` then reads again and retracts the
item that is newest now. A concurrent ``pop_item`` cannot advance ``last_seq``, so both may redact
the same entry; the store never redacts an entry twice and keeps the first redaction's reason, so
the loser sees a foreign reason and retries on the next item. A lost answer is resolved by reading
the entry back. Each ``pop_item`` therefore removes exactly the item that was newest when it took
effect and returns that item. Redacted entries keep their seq but lose their content, and
``get_items`` skips them.

**clear_session** compacts the session (CompactSession before ``last_seq + 1``, with ``force``): the
entries are removed for good, while the Baton session, its key, owner, handoffs and its seq counter
remain. Deleting it instead would restart seqs at 1 under the same key, which would confuse any
follower resuming a stream after a seq, and would erase handoffs. Items appended after the
``last_seq`` it read are kept: a clear that races an ``add_items`` takes effect before it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, Union, cast

from agents.items import TResponseInputItem
from agents.memory import SessionSettings
from google.rpc import error_details_pb2

from baton._aio import AsyncClient
from baton._errors import BatonError
from baton.integrations._owned import OwnsClient
from baton.v1 import common_pb2

__all__ = ["BatonSession", "ITEM_MEDIA_TYPE", "session_key_for"]

#: Media type of the entries that hold an SDK item (their text is the item's JSON).
ITEM_MEDIA_TYPE = "application/vnd.baton.openai-agents.item+json"

# The most entries AppendEntries takes in one batch.
_MAX_BATCH = 1000
# ListEntries' largest page.
_PAGE = 1000
# How often a read, pop_item or an idempotent write starts over after losing a race (or after
# UNAVAILABLE, for the writes the client does not retry itself) before giving up.
_ATTEMPTS = 50
_KEY = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


def session_key_for(session_id: str) -> str:
    """The Baton session key of an SDK ``session_id``: the id itself when it is a valid key, else
    ``oai-sha256-`` and the hex SHA-256 of its UTF-8 bytes."""
    if _KEY.fullmatch(session_id):
        return session_id
    return "oai-sha256-" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class BatonSession(OwnsClient):
    """An OpenAI Agents SDK ``Session`` stored in Baton (see the module's documentation).

    Args:
        session_id: The SDK's session id; see :func:`session_key_for` for the Baton key.
        client: A :class:`baton.AsyncClient` to use (not closed by the session). When None, the
            session makes one from ``target`` and ``client_kwargs`` on first use (inside the
            running event loop) and closes it in :meth:`close`.
        target: ``host:port`` of batond when the session makes its client (default: the
            ``BATON_TARGET`` environment variable, else ``localhost:50051``).
        agent: The Baton agent that creates the session and authors its entries.
        session_settings: The SDK's ``SessionSettings`` (or a dict of its fields); its ``limit``
            is the default of ``get_items``.
        **client_kwargs: Passed to :class:`baton.AsyncClient` (``tenant``, ``api_key``, ``tls``,
            ``timeout``, ``retry``, ...).
    """

    session_settings: Optional[SessionSettings] = None

    def __init__(
        self,
        session_id: str,
        client: Optional[AsyncClient] = None,
        *,
        target: Optional[str] = None,
        agent: str = "agent",
        session_settings: Union[SessionSettings, Mapping[str, Any], None] = None,
        **client_kwargs: Any,
    ) -> None:
        if client is not None and (target is not None or client_kwargs):
            raise TypeError("pass either client or target/client options, not both")
        self.session_id = session_id
        self.session_key = session_key_for(session_id)
        self.agent = agent
        if session_settings is None:
            self.session_settings = SessionSettings()
        elif isinstance(session_settings, SessionSettings):
            self.session_settings = session_settings
        else:
            self.session_settings = SessionSettings(**session_settings)
        self._hold_client(client, target, client_kwargs)
        # (fingerprint, idempotency key) of the last add_items that failed.
        self._failed_append: Optional[Tuple[str, str]] = None

    def __repr__(self) -> str:
        return f"BatonSession(session_id={self.session_id!r}, session_key={self.session_key!r}, agent={self.agent!r})"

    # --- the Session protocol -------------------------------------------------------------

    async def get_items(self, limit: Optional[int] = None) -> List[TResponseInputItem]:
        """The session's items, oldest first: all of them, or the newest ``limit``.

        ``limit`` None means ``session_settings.limit``; as in the SDK's SQLiteSession, 0 gives
        no items and a negative limit all of them.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit < 0:
            limit = None
        if limit == 0:
            return []
        _, tail = await self._read_tail(limit)
        return [item for _, item in tail]

    async def add_items(self, items: List[TResponseInputItem]) -> None:
        """Appends the items in one AppendEntries (see the module's note on idempotency)."""
        if not items:
            return
        entries = [_entry(item, self.agent) for item in items]
        fingerprint = hashlib.sha256("\n".join(e["text"] for e in entries).encode("utf-8")).hexdigest()
        failed, self._failed_append = self._failed_append, None
        key = failed[1] if failed is not None and failed[0] == fingerprint else "oai-" + uuid.uuid4().hex
        try:
            for start in range(0, len(entries), _MAX_BATCH):
                chunk_key = key if start == 0 else f"{key}.{start // _MAX_BATCH}"
                await self._append(entries[start : start + _MAX_BATCH], chunk_key)
        except BaseException:
            self._failed_append = (fingerprint, key)
            raise

    async def pop_item(self) -> Optional[TResponseInputItem]:
        """Retracts the newest item and returns it; None when there is none (see the module's
        note on race safety)."""
        reason = f"openai-agents pop_item {uuid.uuid4().hex}"
        last_error: Optional[BatonError] = None
        for attempt in range(_ATTEMPTS):
            last_seq, tail = await self._read_tail(1)
            if not tail:
                return None
            seq, item = tail[-1]
            try:
                answer = await self.client.redact_entries(
                    session_key=self.session_key,
                    seqs=[seq],
                    reason=reason,
                    agent=self.agent,
                    expected_last_seq=last_seq,
                )
            except BatonError as err:
                if err.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
                    # The answer was lost: whether the redaction happened is in the entry.
                    if await self._redacted_with(seq, reason):
                        return item
                elif not _lost_race(err):
                    raise
                last_error = err
            else:
                if answer.entries and answer.entries[0].redaction.reason == reason:
                    return item
                # Another pop_item retracted this entry first: the next one is ours to take.
            await _backoff(attempt)
        raise last_error or RuntimeError(f"pop_item lost {_ATTEMPTS} races in a row on {self.session_key!r}")

    async def clear_session(self) -> None:
        """Removes every item: compacts the Baton session up to its current last seq (see the
        module's note)."""
        try:
            session = await self.client.get_session(session_key=self.session_key)
        except BatonError as err:
            if err.code == "NOT_FOUND":
                return
            raise
        if session.last_seq < max(session.first_seq, 1):
            return
        await self._idempotent_write(
            lambda: self.client.compact_session(
                session_key=self.session_key, before_seq=session.last_seq + 1, force=True
            ),
            ok_codes=("NOT_FOUND",),
        )

    # --- machinery ------------------------------------------------------------------------

    async def _append(self, entries: List[Dict[str, Any]], key: str) -> None:
        try:
            await self.client.append_entries(session_key=self.session_key, entries=entries, idempotency_key=key)
            return
        except BatonError as err:
            if err.code != "NOT_FOUND":
                raise
        # First use (or the session was deleted): create it, then append with the same key.
        await self._idempotent_write(
            lambda: self.client.create_session(session_key=self.session_key, agent=self.agent),
            ok_codes=("ALREADY_EXISTS",),
        )
        await self.client.append_entries(session_key=self.session_key, entries=entries, idempotency_key=key)

    async def _idempotent_write(self, call: Callable[[], Awaitable[Any]], ok_codes: Tuple[str, ...]) -> None:
        """Runs a write that is safe to repeat, retrying UNAVAILABLE (which the client does not
        retry for writes, since a lost answer may hide a change); ``ok_codes`` count as done."""
        for attempt in range(_ATTEMPTS):
            try:
                await call()
                return
            except BatonError as err:
                if err.code in ok_codes:
                    return
                if err.code != "UNAVAILABLE" or attempt == _ATTEMPTS - 1:
                    raise
            await _backoff(attempt)

    async def _read_tail(self, limit: Optional[int]) -> Tuple[int, List[Tuple[int, TResponseInputItem]]]:
        """The session's last seq and its newest ``limit`` live items (all when None) with their
        seqs, oldest first, as of that last seq; ``(0, [])`` when the session does not exist."""
        for attempt in range(_ATTEMPTS):
            try:
                session = await self.client.get_session(session_key=self.session_key)
                first, last = max(session.first_seq, 1), session.last_seq
                if limit is None:
                    return last, await self._scan(first - 1, last + 1)
                # Read back from the end in growing windows until enough live items are found.
                found: List[Tuple[int, TResponseInputItem]] = []
                upper, window = last + 1, limit
                while True:
                    lower = max(first - 1, upper - 1 - window)
                    found = await self._scan(lower, upper) + found
                    if len(found) >= limit or lower <= first - 1:
                        return last, found[-limit:]
                    upper, window = lower + 1, window * 2
            except BatonError as err:
                if err.code == "NOT_FOUND":
                    return 0, []
                # OUT_OF_RANGE: a concurrent clear_session compacted what we were reading.
                if err.code != "OUT_OF_RANGE" or attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _scan(self, after_seq: int, before_seq: int) -> List[Tuple[int, TResponseInputItem]]:
        """The live items with after_seq < seq < before_seq, with their seqs."""
        items: List[Tuple[int, TResponseInputItem]] = []
        token = ""
        while after_seq + 1 < before_seq:
            page = await self.client.list_entries(
                session_key=self.session_key,
                after_seq=after_seq,
                before_seq=before_seq,
                page_size=_PAGE,
                page_token=token,
            )
            for e in page.entries:
                item = _item(e)
                if item is not None:
                    items.append((e.seq, item))
            token = page.next_page_token
            if not token:
                break
        return items

    async def _redacted_with(self, seq: int, reason: str) -> bool:
        """Whether entry ``seq`` was redacted with ``reason`` (False when it is gone)."""
        try:
            page = await self.client.list_entries(session_key=self.session_key, after_seq=seq - 1, before_seq=seq + 1)
        except BatonError as err:
            if err.code in ("NOT_FOUND", "OUT_OF_RANGE"):
                return False
            raise
        return any(e.seq == seq and e.redacted and e.redaction.reason == reason for e in page.entries)


def _lost_race(err: BatonError) -> bool:
    """Whether a failed RedactEntries lost a race (and pop_item should read again): entries were
    appended since the read (SEQ_MISMATCH), the entry was compacted away by a clear_session
    (INVALID_ARGUMENT on ``seqs``) or the session deleted."""
    if err.code == "FAILED_PRECONDITION":
        return any(
            v.type == "SEQ_MISMATCH"
            for d in err.details
            if isinstance(d, error_details_pb2.PreconditionFailure)
            for v in d.violations
        )
    if err.code == "INVALID_ARGUMENT":
        return bool(err.field_violations) and all(f.field.startswith("seqs") for f in err.field_violations)
    return err.code == "NOT_FOUND"


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))


def _entry(item: TResponseInputItem, author: str) -> Dict[str, Any]:
    """The NewEntry (as a dict) that stores an item."""
    kind, role = _kind_and_role(cast(Mapping[str, Any], item))
    try:
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them escaped
        text = json.dumps(item, separators=(",", ":"))
    return {"kind": kind, "role": role, "author": author, "text": text, "media_type": ITEM_MEDIA_TYPE}


def _kind_and_role(item: Mapping[str, Any]) -> Tuple[str, str]:
    item_type = item.get("type")
    role = item.get("role")
    if isinstance(role, str) and item_type in (None, "message"):
        return ("system" if role in ("system", "developer") else "message"), role[:64]
    if isinstance(item_type, str):
        if item_type.endswith("_call") or item_type == "mcp_approval_request":
            return "tool_call", "assistant"
        if item_type.endswith("_output") or item_type in ("mcp_list_tools", "mcp_approval_response"):
            return "tool_result", "tool"
    return "message", role[:64] if isinstance(role, str) and role else "assistant"


def _item(entry: common_pb2.Entry) -> Optional[TResponseInputItem]:
    """The item an entry holds; None for a redacted entry, an entry that is not an item, or one
    whose JSON does not decode (skipped, as SQLiteSession skips such rows)."""
    if entry.redacted or entry.media_type != ITEM_MEDIA_TYPE or entry.WhichOneof("content") != "text":
        return None
    try:
        return cast(TResponseInputItem, json.loads(entry.text))
    except ValueError:
        return None
