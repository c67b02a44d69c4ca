"""The OpenAI Agents SDK through Lockgate, on its default model (`OpenAIResponsesModel`: the Responses API).

    lockgate demo &
    python examples/openai_agents.py

The agent's model client is `session.async_openai()`, so every LLM call carries the session and the
trace context; the tool runs inside `session.tool_call` with the call id the model gave. The Agents
SDK's own tracing (which uploads to OpenAI) is switched off: the spans go to OpenTelemetry instead.
`OpenAIChatCompletionsModel` (chat completions) works the same way.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODEL, demo_gateway
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from agents.tool_context import ToolContext
from lockgate_sdk import Gateway, Session


def make_agent(session: Session, model: str) -> Agent:
    @function_tool
    def get_weather(ctx: ToolContext[None], city: str) -> str:
        """Current weather for a city."""
        with session.tool_call("get_weather", ctx.tool_call_id, {"city": city}) as traced:
            result = json.dumps({"city": city, "forecast": "sunny", "celsius": 21})
            traced.set_result(result)
            return result

    return Agent(
        name="weather-agent",
        instructions="Answer weather questions with the get_weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=model, openai_client=session.async_openai()),
    )


async def run(gateway: Gateway, session_id: str | None = None, model: str = MODEL) -> str:
    async with gateway.session(id=session_id, agent_name="weather-agent") as session:
        result = await Runner.run(
            make_agent(session, model),
            "What is the weather in Paris?",
            run_config=RunConfig(tracing_disabled=True),
            max_turns=5,
        )
        await session.state.aset("last_answer", str(result.final_output))
        return str(result.final_output)


if __name__ == "__main__":
    with demo_gateway("weather-agent") as gateway:
        print(asyncio.run(run(gateway)))
