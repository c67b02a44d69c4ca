"""Which providers speak the OpenAI API natively, where they live, and where their keys come from.

A `model_list` entry's `litellm_params.model` is `provider/name` in LiteLLM's spelling. Providers in
`OPENAI_COMPATIBLE` take the pass-through path (the body is forwarded as it is); `fake` is the
built-in fake provider; everything else goes through the litellm adapter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompatibleProvider:
    # The `gen_ai.provider.name` value the telemetry uses for it.
    semconv_name: str
    default_api_base: str | None
    key_env: str | None


OPENAI_COMPATIBLE: dict[str, CompatibleProvider] = {
    "openai": CompatibleProvider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "text-completion-openai": CompatibleProvider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "groq": CompatibleProvider("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together_ai": CompatibleProvider("together_ai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "openrouter": CompatibleProvider("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "deepseek": CompatibleProvider("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "fireworks_ai": CompatibleProvider(
        "fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"
    ),
    "mistral": CompatibleProvider("mistral_ai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "xai": CompatibleProvider("x_ai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "deepinfra": CompatibleProvider("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "cerebras": CompatibleProvider("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "perplexity": CompatibleProvider("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    # Self-hosted servers: the api_base is the operator's.
    "hosted_vllm": CompatibleProvider("vllm", None, None),
    "vllm": CompatibleProvider("vllm", None, None),
    "lm_studio": CompatibleProvider("lm_studio", None, None),
    "ollama_chat": CompatibleProvider("ollama", None, None),
    "llamafile": CompatibleProvider("llamafile", None, None),
}

FAKE_PROVIDER = "fake"


def split_model(model: str) -> tuple[str, str]:
    """`provider/name` -> (provider, name); a bare name is an OpenAI model, as in LiteLLM."""
    provider, sep, name = model.partition("/")
    if not sep:
        return "openai", model
    return provider, name
