#!/usr/bin/env python3
"""Writes the request data of Baton's ghz scenarios (Python 3.11 standard library only).

The scenario configs under ghz/scenarios/ name these files with "data-file"; `ghz/run`
generates them into ghz/.work/data/ before seeding, sized by the run mode (the quick mode
seeds fewer sessions). Everything is deterministic (a fixed random seed), so two runs send
the same bytes and their figures are comparable.

Data shape: sessions of 1,000 entries of about 500 bytes, of mixed kinds as an agent's
context is: user and assistant messages, tool calls (JSON arguments), tool results (command
output), files (source text, and one binary blob per batch) and system notes, each with a
small metadata object. Seed batches are 50 entries; one round of them also carries a SUMMARY
entry, so context windows have a summary to start from, as in real use.

Session keys (shared with ghz/run): r-NNNN read sessions (seeded with 1k entries), w-NNNN
write sessions (empty at start, appended to by the write scenarios), f-NNNN follow sessions
(the 10k-streams scenario), and stream-10k (10,000 entries, the replay scenario).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from pathlib import Path

ENTRY_BYTES = 500
SEED_BATCH = 50
STREAM_SESSION = "stream-10k"
WINDOW_HOT_SESSIONS = 4

WORDS = (
    "the schema migration adds an index on sessions so that listing by owner stays fast "
    "while the append path keeps its row lock short we verified the plan with explain and "
    "the tests pass on both stores next step is to wire the cache and measure again with "
    "ghz under load the handoff summary lists files touched tools used and open questions "
    "for the reviewing agent who continues from the last sequence number without gaps"
).split()

FILES = ("server/src/store/postgres.rs", "server/src/domain/service.rs", "proto/baton/v1/context.proto",
         "migrations/postgres/0001_init.sql", "server/src/hub.rs", "README.md")
TOOLS = ("read_file", "run_tests", "grep", "apply_patch", "list_dir", "cargo_check")


def read_key(i: int) -> str:
    return f"r-{i:04d}"


def write_key(i: int) -> str:
    return f"w-{i:04d}"


def follow_key(i: int) -> str:
    return f"f-{i:04d}"


def _pad(rng: random.Random, head: str, size: int = ENTRY_BYTES) -> str:
    """`head` followed by prose, cut at a word boundary near `size` bytes."""
    out = head
    while len(out) < size:
        out += " " + rng.choice(WORDS)
    cut = out.rfind(" ", 0, size)
    return out[: cut if cut > size // 2 else size]


def entry(rng: random.Random, n: int, kind: str | None = None) -> dict:
    """The n-th entry of a batch; kinds rotate so every batch has them all."""
    kinds = ("message", "message", "tool_call", "tool_result", "file", "message", "tool_call",
             "tool_result", "system", "message")
    kind = kind or kinds[n % len(kinds)]
    author = f"agent-{n % 3}"
    meta: dict = {"turn": n, "model": "model-a"}
    if kind == "message":
        role = "user" if n % 2 == 0 else "assistant"
        text = _pad(rng, f"{role} turn {n}: ")
        e = {"kind": "ENTRY_KIND_MESSAGE", "role": role, "author": author, "text": text, "media_type": "text/plain"}
    elif kind == "tool_call":
        tool = TOOLS[n % len(TOOLS)]
        args = {"path": FILES[n % len(FILES)], "pattern": "fn append", "context_lines": 3}
        text = json.dumps({"tool": tool, "arguments": args, "note": ""})
        text = text[:-2] + _pad(rng, "", ENTRY_BYTES - len(text) - 2) + '"}'
        meta = {"turn": n, "tool": tool}
        e = {"kind": "ENTRY_KIND_TOOL_CALL", "role": "assistant", "author": author, "text": text,
             "media_type": "application/json"}
    elif kind == "tool_result":
        lines = [f"test store::postgres::append_{k} ... ok" for k in range(8)]
        text = _pad(rng, "\n".join(lines) + "\ntest result: ok.")
        meta = {"turn": n, "exit_code": 0}
        e = {"kind": "ENTRY_KIND_TOOL_RESULT", "role": "tool", "author": author, "text": text,
             "media_type": "text/plain"}
    elif kind == "file" and n % 20 == 4:
        blob = bytes(rng.randrange(256) for _ in range(ENTRY_BYTES))
        meta = {"turn": n, "path": "assets/diagram.png"}
        e = {"kind": "ENTRY_KIND_FILE", "role": "user", "author": author,
             "data": base64.b64encode(blob).decode(), "media_type": "application/octet-stream"}
    elif kind == "file":
        path = FILES[n % len(FILES)]
        text = _pad(rng, f"// {path}\npub async fn append(&self, cmd: AppendCommand) -> Result<AppendOutcome> {{\n")
        meta = {"turn": n, "path": path}
        e = {"kind": "ENTRY_KIND_FILE", "role": "user", "author": author, "text": text, "media_type": "text/x-rust"}
    elif kind == "summary":
        text = _pad(rng, "Summary so far: the agents migrated the schema, added the index and ran the tests. ")
        meta = {"turn": n, "summarized_by": "summarizer"}
        e = {"kind": "ENTRY_KIND_SUMMARY", "role": "system", "author": "summarizer", "text": text,
             "media_type": "text/plain"}
    else:
        text = _pad(rng, "system: keep answers short, cite files by path, never drop context. ")
        e = {"kind": "ENTRY_KIND_SYSTEM", "role": "system", "author": "baton", "text": text,
             "media_type": "text/plain"}
    e["metadata"] = meta
    return e


def batch(rng: random.Random, size: int, offset: int = 0, summary_at: int | None = None) -> list[dict]:
    return [entry(rng, offset + k, "summary" if k == summary_at else None) for k in range(size)]


def generate(read: int, write: int, follow: int, append50_sessions: int = 64) -> dict[str, list[dict]]:
    """Every data file, by name. `read`, `write`, `follow`: session counts."""
    rng = random.Random(7)
    files: dict[str, list[dict]] = {}
    keys = [read_key(i) for i in range(read)]
    wkeys = [write_key(i) for i in range(write)]
    fkeys = [follow_key(i) for i in range(follow)]

    files["create_sessions"] = (
        [{"session_key": k, "agent": f"planner-{i:03d}", "metadata": {"project": "baton", "bench": True}}
         for i, k in enumerate(keys + wkeys + fkeys + [STREAM_SESSION])]
    )
    # New sessions for the CreateSession scenario: generated keys (session_key empty).
    files["create_session"] = [{"agent": f"planner-{i:03d}", "metadata": {"project": "baton"}} for i in range(64)]

    # Seed rounds: request r goes to session r mod read (ghz round-robins over the array).
    plain = batch(rng, SEED_BATCH)
    with_summary = batch(rng, SEED_BATCH, summary_at=SEED_BATCH // 2)
    files["seed_batch"] = [{"session_key": k, "entries": plain[i % 7:] + plain[: i % 7]} for i, k in enumerate(keys)]
    files["seed_batch_summary"] = [{"session_key": k, "entries": with_summary} for k in keys]
    files["seed_stream"] = [{"session_key": STREAM_SESSION, "entries": plain}]

    files["append1"] = [{"session_key": k, "entries": [entry(rng, i)]} for i, k in enumerate(wkeys)]
    files["append50"] = [{"session_key": k, "entries": batch(rng, SEED_BATCH, offset=i)}
                         for i, k in enumerate(wkeys[:append50_sessions])]
    files["window_hot"] = [{"session_key": k} for k in keys[:WINDOW_HOT_SESSIONS]]
    files["window_cold"] = [{"session_key": k} for k in keys]
    files["list_entries"] = [{"session_key": k, "after_seq": (i * 137) % 900, "page_size": 100}
                             for i, k in enumerate(keys)]
    files["stream_replay"] = [{"session_key": STREAM_SESSION, "after_seq": 0, "follow": False}]
    files["request_handoff"] = [
        {"session_key": k, "from_agent": f"planner-{i:03d}", "to_agent": f"coder-{i % 50:02d}",
         "type": "HANDOFF_TYPE_CONTEXT_TRANSFER", "instructions": "Continue from the failing test; keep the API."}
        for i, k in enumerate(keys)
    ]
    files["follow"] = [{"session_key": k, "after_seq": 0, "follow": True} for k in fkeys]
    files["follow_append"] = [{"session_key": k, "entries": [entry(rng, i)]} for i, k in enumerate(fkeys)]
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="directory to write NAME.json files into")
    p.add_argument("--read-sessions", type=int, default=200)
    p.add_argument("--write-sessions", type=int, default=256)
    p.add_argument("--follow-sessions", type=int, default=100)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name, data in generate(a.read_sessions, a.write_sessions, a.follow_sessions).items():
        # ghz treats data as an array (round-robin) only when '[' is the very first byte.
        (a.out / f"{name}.json").write_text(json.dumps(data, separators=(",", ":")))


if __name__ == "__main__":
    main()
