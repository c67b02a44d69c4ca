"""A plain `openai` tool loop through Lockgate: the model asks for a tool, the agent runs it, the model answers.

    lockgate demo &            # the gateway with fake models, no key, no network
    python examples/openai_tool_loop.py

One trace holds the agent's `invoke_agent` span, the gateway's spans for both LLM calls, and the
`execute_tool get_weather` span; the tool's outcome is also reported to the gateway.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODEL, demo_gateway
from lockgate_sdk import Gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "forecast": "sunny", "celsius": 21})


def run(gateway: Gateway, session_id: str | None = None, model: str = MODEL) -> str:
    with gateway.session(id=session_id, user="example-user") as session:
        client = session.openai()
        messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
        for _ in range(5):  # a bounded loop: a real agent would cap its steps too
            reply = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
            message = reply.choices[0].message
            if not message.tool_calls:
                session.state["last_answer"] = message.content
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                arguments = json.loads(call.function.arguments)
                with session.tool_call(call.function.name, call.id, arguments) as traced:
                    result = get_weather(**arguments)
                    traced.set_result(result)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise RuntimeError("the model kept calling tools")


if __name__ == "__main__":
    with demo_gateway("weather-agent") as gateway:
        print(run(gateway))
