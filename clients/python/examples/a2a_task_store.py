"""Baton as the task store of an A2A server (a2a-sdk): two replicas of one agent share a task.

    pip install "./clients/python[a2a]"
    batond &                                   # listens on localhost:50051
    python clients/python/examples/a2a_task_store.py [host:port]

Replica A takes the first message of a task and asks a question (input required); replica B,
another process as far as the task is concerned (its own store and Baton client), takes the
answer and completes the task. Both read the same task from Baton. The agent is a stand-in that
answers from a script; a real one would call a model. The target comes from the first argument,
else BATON_TARGET, else localhost:50051.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from a2a.auth.user import User
from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)

from baton.integrations.a2a import BatonTaskStore


class TripPlanner(AgentExecutor):
    """Asks one question, then writes the plan as an artifact."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id and context.message
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        if context.current_task is None:
            task = new_task(
                context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED, history=[context.message]
            )
            await event_queue.enqueue_event(task)
            await updater.requires_input(updater.new_agent_message([Part(text="How many days?")]))
            return
        days = context.message.parts[0].text
        await updater.start_work()
        await updater.add_artifact([Part(text=f"A {days}-day plan for Lisbon.")], name="plan")
        await updater.complete(updater.new_agent_message([Part(text="Done.")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


class Alice(User):
    """The authenticated caller; a server's auth middleware provides it."""

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return "alice"


def replica(store: BatonTaskStore) -> DefaultRequestHandler:
    card = AgentCard(
        name="trip planner",
        description="Plans trips",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url="http://localhost:9999/", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="plan", name="plan", description="Plans a trip", tags=["travel"])],
    )
    return DefaultRequestHandler(agent_executor=TripPlanner(), task_store=store, agent_card=card)


async def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BATON_TARGET", "localhost:50051")
    # Each replica has its own store and Baton client; Baton is what they share.
    stores = [BatonTaskStore(target=target, tenant="a2a-example") for _ in range(2)]
    a, b = (replica(s) for s in stores)
    # What an A2A transport (JSON-RPC, REST, gRPC) builds for each request: the caller and tenant.
    caller = ServerCallContext(user=Alice())

    first = Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="Plan a trip to Lisbon.")])
    asked = await a.on_message_send(SendMessageRequest(message=first), caller)
    assert isinstance(asked, Task)
    print(f"replica A: task {asked.id} is {TaskState.Name(asked.status.state)}: {asked.status.message.parts[0].text}")

    answer = Message(
        message_id="m-2", role=Role.ROLE_USER, task_id=asked.id, context_id=asked.context_id, parts=[Part(text="3")]
    )
    done = await b.on_message_send(SendMessageRequest(message=answer), caller)
    assert isinstance(done, Task)
    print(f"replica B: task {done.id} is {TaskState.Name(done.status.state)}: {done.artifacts[0].parts[0].text}")

    seen = await a.on_get_task(GetTaskRequest(id=asked.id), caller)
    assert seen is not None
    print(f"replica A reads it back: {TaskState.Name(seen.status.state)}, {len(seen.history)} messages in history")
    for handler, store in zip((a, b), stores):
        await handler.aclose()
        await store.close()
    summary = {"task": done.id, "state": TaskState.Name(seen.status.state), "replicas_agree": seen == done}
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
