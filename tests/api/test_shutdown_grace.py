"""`server.shutdown_grace`: how long a stopping gateway lets the requests in flight finish.

A reasoning model's stream can run for minutes; uvicorn's default grace cut it off at 10 s on every
deploy, and the agent paid for the call again. A real `lockgate serve` process, SIGTERM mid-stream.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import openai

from tests.replicas import gateway_replicas


def test_a_stream_longer_than_the_default_grace_finishes_when_the_grace_allows_it(tmp_path: Path) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(  # eight words, 1.5 s apart: ~10.5 s, past the default 10 s grace
        "model_list:\n  - model_name: slow\n    litellm_params: {model: fake/drip-1500ms}\n"
        "server: {shutdown_grace: 60}\n"
    )
    with gateway_replicas(config, 1) as [(url, process)]:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}],
                                                stream=True)
        first = next(iter(stream))  # the stream is under way
        stopped = threading.Thread(target=process.send_signal, args=(signal.SIGTERM,))
        stopped.start()
        rest = list(stream)
        stopped.join()
        process.wait(60)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == "This is Lockgate's fake provider. You said: hi"
    assert rest[-1].choices[0].finish_reason == "stop"
