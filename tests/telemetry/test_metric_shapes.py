"""The common request's metrics shortcut (one served attempt with usage, `GatewayMetrics._record_common`)
records exactly what the general path records, series for series, on the Prometheus endpoint."""

from __future__ import annotations

import re
import time

from gateway.config import parse_config
from gateway.context import ApiRequest, Attempt
from gateway.providers.base import Summary, Usage
from gateway.telemetry import Telemetry

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: 'https://api.example.com/v1', api_key: sk-secret-abcdef0123456789}
    model_info: {id: gpt-4o-a, input_cost_per_token: 0.000002, output_cost_per_token: 0.00001}
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: 'http://10.0.0.7:8000/v1', api_key: sk-other-abcdef0123456789}
"""


def requests() -> list[tuple[ApiRequest, int, str]]:
    config = parse_config(CONFIG)
    priced = config.groups["gpt-4o"].deployments[0]
    unpriced = config.groups["mini"].deployments[0]
    made = []
    for i, (deployment, stream, ttfc, cost, model) in enumerate([
        (priced, False, None, None, "gpt-4o"),
        (priced, False, None, 1234, "gpt-4o"),
        (priced, True, 0.05, None, "gpt-4o"),
        (unpriced, True, None, None, "mini"),
        (unpriced, False, None, 99, "mini"),
        (unpriced, False, None, None, "not-configured"),
        (priced, True, 0.2, 500, "gpt-4o"),
    ]):
        request = ApiRequest(request_id=f"r{i}", operation="chat", headers={}, body={}, raw=b"", model=model,
                             stream=stream)
        summary = Summary(response_id=f"c{i}", response_model="gpt-4o-2024" if i % 2 else "", finish_reasons=["stop"],
                          usage=Usage(input_tokens=10 * i + 3, output_tokens=7 * i + 1), time_to_first_chunk=ttfc)
        # Streams' operation lasts until now: started long enough ago that the clock's moving cannot change a bucket.
        request.attempts.append(Attempt(deployment, time.time() - 0.3, 0.01 * (i + 1), None, summary))
        request.cost_micros = cost
        request.decide("lockgate.budget.settle", charged_usd_micros=cost or 0, tokens=17 * i + 4)
        made.append((request, 200 if i != 5 else 201, "/v1/chat/completions"))
    return made


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_the_shortcut_records_what_the_general_path_records() -> None:
    shortcut, general = (Telemetry(parse_config(CONFIG), environ={}) for _ in range(2))
    assert shortcut.metrics is not None and general.metrics is not None
    assert shortcut.prometheus is not None and general.prometheus is not None
    for _ in range(3):  # the first pass makes each shape, the next ones go through it
        for request, status, route in requests():
            shortcut.metrics.record(request, status, 0.25, route)
            general.metrics._record_general(request, status, 0.25, route)
    ours, theirs = samples(shortcut.prometheus.render().decode()), samples(general.prometheus.render().decode())
    assert ours.keys() == theirs.keys()
    assert len([k for k in ours if k.startswith("gen_ai_client_operation_time_to_first_chunk")]) > 0
    for name, value in ours.items():
        if re.search(r"_(sum|created)\b", name.split("{")[0]):  # stream durations read the clock; creation times
            assert abs(value - theirs[name]) < 0.05 or "created" in name, name
        else:
            assert value == theirs[name], name
