"""Request bodies for the policies benchmarks: agents resending their growing conversations.

An agent sends its whole conversation on every turn, so most of a request is text the gateway has
seen before, and only the newest messages are new. To measure that honestly (and not a body repeated
verbatim, which would make every per-message cache a hit), each simulated client runs conversations
of `TURNS` turns: turn t sends the shared system prompt, the t earlier exchanges (user question, a
tool call, its result, the answer; with emails and phone numbers in them, as agents' traffic has)
and a new question that names an email address. Every client's conversations are its own, and a new
conversation starts after the last turn, so a request has 2 to 22 messages (12 on average), of which
the last exchange and the new question are new (three texts, ~450 characters) and the rest were
sent before.

`fixed_body` is the old benchmark body (one system prompt and one user message, identical on every
request), kept so figures can be compared with those measured before the agent turns.
"""

from __future__ import annotations

from typing import Any

TURNS = 6
MODEL = "gpt-4o"

SYSTEM = (
    "You are Ops Assistant, an agent that helps the finance operations team. You can search the "
    "shared mailbox, read reports and open tickets through the tools you are given. Always check a "
    "fact with a tool before you state it, quote ticket numbers exactly, and keep answers short: "
    "three sentences at most unless the user asks for detail. Never send money, delete documents or "
    "change access rights yourself; say what should be done and by whom. If a tool fails twice, stop "
    "and tell the user what failed. Dates are in ISO format; amounts in the currency of the source. "
    "When a message mentions a customer, refer to them by company name only."
)


def _question(client: int, conversation: int, turn: int) -> str:
    ticket = f"{client}-{conversation}-{turn}"
    return (
        f"Summarise the thread with bob.{ticket}@example.com about the Q{1 + turn % 4} report, "
        f"ticket {ticket}, and tell me whether finance signed it off."
    )


def _exchange(client: int, conversation: int, turn: int) -> list[dict[str, Any]]:
    """One earlier turn: the question, the tool call it led to, the tool's result, the answer."""
    ticket = f"{client}-{conversation}-{turn}"
    call_id = f"call_{client}_{conversation}_{turn}"
    return [
        {"role": "user", "content": _question(client, conversation, turn)},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "search_mail", "arguments": f'{{"query": "ticket {ticket}", "limit": 5}}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": (
            f"3 messages for ticket {ticket}. From carol.{ticket}@example.com: the draft is attached, "
            f"numbers reconciled against the ledger. Reply from finance: signed off, call "
            f"+1 415 555 {client % 10}{conversation % 10}{turn % 10}7 with questions.")},
        {"role": "assistant", "content": (
            f"Ticket {ticket}: the report draft was reconciled against the ledger and finance signed it "
            "off; questions go to the finance desk by phone.")},
    ]


def agent_body(client: int, request: int, stream: bool) -> dict[str, Any]:
    """The `request`-th body client number `client` sends: turn `request % TURNS` of a conversation."""
    conversation, turn = divmod(request, TURNS)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for earlier in range(turn):
        messages.extend(_exchange(client, conversation, earlier))
    messages.append({"role": "user", "content": _question(client, conversation, turn)})
    return {"model": MODEL, "stream": stream, "max_tokens": 256, "messages": messages}


def agent_headers(client: int, request: int) -> dict[str, str]:
    """Each of a client's conversations is a session of its own."""
    return {"x-lockgate-session-id": f"bench-{client}-{request // TURNS}"}


def fixed_body(stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL, "stream": stream, "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "Summarise the thread with bob@example.com about the Q3 report."},
        ],
    }
