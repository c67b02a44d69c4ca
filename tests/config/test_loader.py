"""Config loading: LiteLLM files load unchanged, Lockgate's sections are strict, errors name key paths."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config

LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      rpm: 500
      tpm: 200000
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://example-eu.openai.azure.com
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      weight: 2
  - model_name: claude-sonnet
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      api_key: os.environ/ANTHROPIC_API_KEY
    model_info:
      id: claude-primary
  - model_name: local-llama
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://127.0.0.1:8000/v1
litellm_settings:
  drop_params: true
  success_callback: ["langfuse"]
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 3
  timeout: 30
  fallbacks: [{"gpt-4o": ["claude-sonnet"]}]
  redis_host: localhost
general_settings:
  master_key: sk-1234
  database_url: postgresql://example
"""

ENV = {"OPENAI_API_KEY": "sk-openai-xxxxxxxxxxxx", "AZURE_API_KEY": "az-key", "ANTHROPIC_API_KEY": "sk-ant-xxxxxxxx"}


def test_a_litellm_config_loads_unchanged_with_warnings_for_what_lockgate_ignores() -> None:
    config = parse_config(LITELLM_CONFIG, environ=ENV)

    gpt = config.groups["gpt-4o"].deployments
    assert [d.route for d in gpt] == ["passthrough", "litellm"]
    assert gpt[0].api_base == "https://api.openai.com/v1" and gpt[0].api_key == ENV["OPENAI_API_KEY"]
    assert gpt[0].rpm == 500 and gpt[1].weight == 2
    assert ("api_version", "2024-10-21") in gpt[1].extra_params
    assert config.groups["claude-sonnet"].deployments[0].id == "claude-primary"
    assert config.groups["local-llama"].deployments[0].upstream_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert config.router.fallbacks == (("gpt-4o", ("claude-sonnet",)),)
    assert config.router.num_retries == 3 and config.router.timeout == 30
    assert config.master_key == "sk-1234"
    assert set(config.warnings) >= {
        "litellm_settings.drop_params: LiteLLM setting not implemented by Lockgate; ignored",
        "router_settings.redis_host: LiteLLM setting not implemented by Lockgate; ignored",
        "general_settings.database_url: LiteLLM setting not implemented by Lockgate; ignored",
    }


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ=environ or {})
    return caught.value.problems


def test_unknown_keys_in_lockgate_sections_are_errors_with_path_and_hint() -> None:
    found = problems("server:\n  prot: 4000\nkeys:\n  - {name: a, key: sk-aaaaaaaaaa, modles: []}\nbudgetz: {}\n"
                     "audit: {fold_repeats: 60}\n")
    assert "server.prot: unknown key; did you mean 'port'?" in found
    assert "audit.fold_repeats: unknown key; did you mean 'fold_repeats_seconds'?" in found
    assert "keys[0].modles: unknown key; did you mean 'models'?" in found
    assert any(p.startswith("budgetz: unknown key") for p in found)


def test_every_problem_is_reported_with_its_path_and_no_secret_values() -> None:
    found = problems(
        "model_list:\n"
        "  - model_name: a\n    litellm_params: {model: openai/a, api_key: os.environ/MISSING_KEY}\n"
        "  - model_name: b\n    litellm_params: {model: hosted_vllm/b}\n"
        "  - model_name: c\n    litellm_params: {weight: -1}\n"
        "general_settings: {master_key: sk-super-secret-value}\n"
        "server: {port: 99999}\n"
        "audit: {fold_repeats_seconds: -1}\n"
    )
    assert "model_list[0].litellm_params.api_key: environment variable MISSING_KEY is not set" in found
    assert any(p.startswith("model_list[2].litellm_params.model: Field required") for p in found)
    assert any(p.startswith("model_list[2].litellm_params.weight:") for p in found)
    assert any(p.startswith("server.port:") for p in found)
    assert "audit.fold_repeats_seconds: Input should be greater than or equal to 0" in found
    assert not any("sk-super-secret-value" in p for p in found)


def test_semantic_problems_name_their_paths() -> None:
    found = problems(
        "model_list:\n"
        "  - model_name: a\n    litellm_params: {model: hosted_vllm/b}\n"
        "  - model_name: c\n    litellm_params: {model: fake/c, api_base: ftp://nope}\n"
        "  - model_name: d\n    litellm_params: {model: fake/d}\n"
        "router_settings:\n  fallbacks: [{d: [nowhere]}]\n"
        "keys:\n  - {name: k, key: sk-kkkkkkkkkk, models: [ghost]}\n"
    )
    assert "model_list[0].litellm_params.api_base: required for 'hosted_vllm/' models" in found
    assert "model_list[1].litellm_params.api_base: must start with http:// or https://" in found
    assert "router_settings.fallbacks[0].d[0]: no model_list entry has model_name 'nowhere'" in found
    assert "keys[0].models[0]: no model_list entry has model_name 'ghost'" in found


def test_yaml_syntax_errors_give_a_line() -> None:
    assert problems("model_list:\n  - model_name: [unclosed\n") == ["<config>: not valid YAML at line 3, column 1"]


def test_empty_file_is_valid_but_warns() -> None:
    config = parse_config("", environ={})
    assert config.groups == {}
    assert any("no models are configured" in w for w in config.warnings)
