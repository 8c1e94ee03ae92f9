"""Baton as the session store of the OpenAI Agents SDK: two replicas of one app share a
conversation, an answer is retracted with pop_item, and the history is cleared.

    pip install "./clients/python[openai-agents]"
    batond &                                   # listens on localhost:50051
    python clients/python/examples/openai_agents_session.py [host:port]

The target comes from the first argument, else BATON_TARGET, else localhost:50051. With
OPENAI_API_KEY set the agent uses the SDK's default OpenAI model; without it, a small offline
model that answers from the conversation it is given, so the example runs anywhere.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any, AsyncIterator

from agents import Agent, RunConfig, Runner, Usage
from agents.items import ModelResponse, TResponseInputItem
from agents.models.interface import Model
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from baton.integrations.openai_agents import BatonSession


class OfflineModel(Model):
    """Stands in for an LLM when there is no API key: says how many user turns it has seen."""

    async def get_response(
        self, system_instructions: Any, input: str | list[TResponseInputItem], *args: Any, **kwargs: Any
    ) -> ModelResponse:
        turns = (
            [i for i in input if isinstance(i, dict) and i.get("role") == "user"]
            if isinstance(input, list)
            else [input]
        )
        text = f"(offline) I have seen {len(turns)} user message(s); the last was {_text(turns[-1])!r}."
        message = ResponseOutputMessage(
            id=f"msg_{uuid.uuid4().hex[:12]}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the offline model does not stream")


def _text(item: Any) -> str:
    """The text of a user message (a string) or an assistant message (a list of parts)."""
    content = item.get("content") if isinstance(item, dict) else item
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


async def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BATON_TARGET", "localhost:50051")
    offline = not os.environ.get("OPENAI_API_KEY")
    agent = Agent(name="assistant", instructions="Answer in one sentence.", model=OfflineModel() if offline else None)
    config = RunConfig(tracing_disabled=offline)
    conversation = f"support-{uuid.uuid4().hex[:8]}"

    # Two replicas of the app (two processes, two machines: here two objects) share the session.
    a = BatonSession(conversation, target=target, agent="support-bot")
    b = BatonSession(conversation, target=target, agent="support-bot")
    try:
        first = await Runner.run(agent, "My name is Ada. What is Baton?", session=a, run_config=config)
        print("replica 1:", first.final_output)
        second = await Runner.run(agent, "What is my name?", session=b, run_config=config)
        print("replica 2:", second.final_output)

        history = await a.get_items()
        print(f"{len(history)} items in Baton session {a.session_key!r}:")
        for item in history:
            print("  ", item.get("role", item.get("type")), ":", _text(item)[:70])

        undone = await b.pop_item()  # retract the last answer, e.g. to regenerate it
        print("retracted:", _text(undone)[:70] if undone else None)
        last = await a.get_items(limit=1)
        print(f"now {len(await a.get_items())} items; the last: {_text(last[0])!r}")

        await a.clear_session()
        print("after clear_session:", await b.get_items())
    finally:
        await a.close()
        await b.close()


if __name__ == "__main__":
    asyncio.run(main())
