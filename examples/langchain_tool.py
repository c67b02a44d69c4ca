"""LangChain's `ChatOpenAI` with a tool, through Lockgate.

    lockgate demo &
    python examples/langchain_tool.py

`ChatOpenAI` builds its own `openai` client; handing it the session's http clients gives it the
trace context and the held-response handling, and `default_headers` the session id. The tool is a
LangChain `@tool` whose body is traced by `@session.tool`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODEL, demo_gateway
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from lockgate_sdk import Gateway


def run(gateway: Gateway, session_id: str | None = None, model: str = MODEL) -> str:
    with gateway.session(id=session_id, agent_name="weather-agent") as session:

        @tool
        @session.tool
        def get_weather(city: str) -> str:
            """Current weather for a city."""
            return json.dumps({"city": city, "forecast": "sunny", "celsius": 21})

        llm = ChatOpenAI(
            model=model,
            base_url=gateway.openai_base_url,
            api_key=gateway.api_key,
            default_headers=session.headers,
            http_client=session.http_client(),
            http_async_client=session.http_client(async_=True),
        ).bind_tools([get_weather])

        messages: list = [HumanMessage("What is the weather in Paris?")]
        for _ in range(5):
            reply = llm.invoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                session.state["last_answer"] = reply.content
                return str(reply.content)
            for call in reply.tool_calls:
                messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
        raise RuntimeError("the model kept calling tools")


if __name__ == "__main__":
    with demo_gateway("weather-agent") as gateway:
        print(run(gateway))
