"""Lockgate: an observability-first LLM gateway that speaks the OpenAI API."""

__version__ = "0.1.0"
