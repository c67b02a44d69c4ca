"""Telemetry: OpenTelemetry traces (GenAI semantic conventions v1.41) and metrics for every request.

`Telemetry` (component.py) is built by the app factory; `TelemetryMiddleware` wraps the app. Names
live in semconv.py; the SDK enters through sdk.py and Prometheus through prometheus.py.
"""

from gateway.telemetry.component import Telemetry
from gateway.telemetry.middleware import TelemetryMiddleware

__all__ = ["Telemetry", "TelemetryMiddleware"]
