"""Baton quickstart: a planner agent opens a session, appends context, follows the stream, and
hands the work off to a coder agent, which accepts and reads the context package.

    pip install ./clients/python
    batond &                                   # listens on localhost:50051
    python clients/python/examples/quickstart.py [host:port]

The target comes from the first argument, else BATON_TARGET, else localhost:50051.
"""

from __future__ import annotations

import os
import sys
import threading

import baton
from baton.v1 import common_pb2


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BATON_TARGET", "localhost:50051")
    planner = baton.Client(target, tenant="quickstart")
    coder = baton.Client(target, tenant="quickstart")

    # 1. The planner opens a session and appends context (one atomic batch).
    session = planner.create_session(agent="planner", metadata={"task": "parser"})
    key = session.session_key
    planner.append_entries(
        session_key=key,
        entries=[
            {"kind": "system", "author": "planner", "text": "Repository: github.com/acme/calc"},
            {"kind": "message", "role": "user", "author": "planner", "text": "Write a parser for arithmetic."},
            {"kind": "message", "role": "assistant", "author": "planner", "text": "Plan: lexer, then grammar."},
        ],
    )
    print(f"session {key} opened by planner")

    # 2. Follow the session: existing entries first, then new ones as they are appended.
    followed = threading.Event()

    def follow() -> None:
        for entry in planner.stream_entries(session_key=key, follow=True, timeout=30):
            print(f"  stream #{entry.seq} [{entry.author}] {entry.text}")
            if entry.seq == 4:
                followed.set()
                return  # leaving the loop cancels the stream

    follower = threading.Thread(target=follow)
    follower.start()
    planner.append_entries(
        session_key=key,
        entries=[{"kind": "message", "role": "assistant", "author": "planner", "text": "Lexer done."}],
    )
    follower.join()
    assert followed.is_set()

    # 3. Hand the work off to the coder.
    handoff = planner.request_handoff(
        session_key=key,
        from_agent="planner",
        to_agent="coder",
        type="full_handoff",
        instructions="Write the grammar; the lexer is done.",
    )
    print(f"handoff {handoff.handoff_id} requested (context up to #{handoff.up_to_seq})")

    # 4. The coder finds it in its inbox, accepts it and reads the context package.
    for event in coder.watch_handoffs(agent="coder", timeout=30):
        if event.handoff.handoff_id == handoff.handoff_id:
            break
    accepted = coder.accept_handoff(handoff_id=handoff.handoff_id, agent="coder")
    print(f"coder accepted: {baton.v1.HandoffStatus.Name(accepted.status)}")
    print("context package:")
    for entry in coder.stream_handoff_context(handoff_id=handoff.handoff_id):
        label = "summary" if entry.kind == common_pb2.ENTRY_KIND_SUMMARY else f"#{entry.seq}"
        print(f"  {label}: {entry.text}")

    # 5. The coder now owns the session, appends its work and completes the handoff.
    coder.append_entries(
        session_key=key,
        entries=[{"kind": "message", "role": "assistant", "author": "coder", "text": "Grammar written."}],
    )
    coder.complete_handoff(handoff_id=handoff.handoff_id, agent="coder")
    print(f"owner is now {coder.get_session(session_key=key).owner}; handoff completed")

    # Errors are baton.BatonError with the gRPC code name and any field violations.
    try:
        coder.append_entries(session_key=key, entries=[{"kind": "message", "text": "no author"}])
    except baton.BatonError as err:
        print(f"expected error: {err.code} {err.field_violations}")

    planner.close()
    coder.close()


if __name__ == "__main__":
    main()
