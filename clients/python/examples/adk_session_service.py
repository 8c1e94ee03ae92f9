"""Google ADK on Baton: an ADK agent whose sessions, events and state live in Baton, so a second
replica of the app (another process, another machine) continues the same conversation.

    pip install "./clients/python[adk]"
    batond &                                   # listens on localhost:50051
    python clients/python/examples/adk_session_service.py [host:port]

The target comes from the first argument, else BATON_TARGET, else localhost:50051. The model is a
scripted stand-in so that the example runs offline; for a real agent give the LlmAgent a model
name instead, e.g. ``model="gemini-2.5-flash"``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import AsyncGenerator, List

from google.adk.agents import LlmAgent
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.runners import Runner
from google.adk.tools import ToolContext
from google.genai import types

from baton.integrations.adk import BatonSessionService


class ScriptedModel(BaseLlm):
    """Answers from a script: a weather lookup through the tool, then plain text."""

    replies: List[LlmResponse] = []

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        yield self.replies.pop(0)


def say(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def call(city: str) -> LlmResponse:
    fc = types.FunctionCall(name="get_weather", args={"city": city})
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=fc)]))


def get_weather(city: str, tool_context: ToolContext) -> dict[str, object]:
    """Returns the weather in a city."""
    tool_context.state["user:last_city"] = city  # user: shared by all sessions of this user
    tool_context.state["app:lookups"] = tool_context.state.get("app:lookups", 0) + 1  # app: by all
    return {"city": city, "forecast": "sunny", "temp_c": 21}


def runner_for(sessions: BatonSessionService, replies: List[LlmResponse]) -> Runner:
    model = ScriptedModel(model="scripted", replies=replies)
    agent = LlmAgent(name="forecaster", model=model, tools=[get_weather], output_key="last_answer")
    return Runner(agent=agent, app_name="weather", session_service=sessions)


async def ask(runner: Runner, session_id: str, text: str) -> None:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    async for event in runner.run_async(user_id="alice", session_id=session_id, new_message=message):
        if event.content and event.content.parts and event.content.parts[0].text:
            print(f"  {event.author}: {event.content.parts[0].text}")


async def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BATON_TARGET", "localhost:50051")

    # Replica 1 opens a session and runs the first turn.
    async with BatonSessionService(target=target, tenant="adk-example") as replica1:
        session = await replica1.create_session(app_name="weather", user_id="alice", state={"units": "metric"})
        print(f"session {session.id} created")
        await ask(runner_for(replica1, [call("Lisbon"), say("Sunny and 21 °C in Lisbon.")]), session.id, "Lisbon?")

    # Replica 2 (its own client, as another process would have) continues the conversation.
    async with BatonSessionService(target=target, tenant="adk-example") as replica2:
        await ask(runner_for(replica2, [say("You asked about Lisbon.")]), session.id, "Which city did I ask about?")
        stored = await replica2.get_session(app_name="weather", user_id="alice", session_id=session.id)
        assert stored is not None
        print(f"{len(stored.events)} events in Baton; state:")
        for key in sorted(stored.state):
            print(f"  {key} = {stored.state[key]!r}")
        listed = await replica2.list_sessions(app_name="weather", user_id="alice")
        print(f"alice has {len(listed.sessions)} session(s) in app weather")
        await replica2.delete_session(app_name="weather", user_id="alice", session_id=session.id)
        print("session deleted")


if __name__ == "__main__":
    asyncio.run(main())
