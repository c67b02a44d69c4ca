"""Config: the file's schema, its loader, and the frozen runtime config built from it."""

from gateway.config.loader import ConfigError, load_config, parse_config
from gateway.config.runtime import RuntimeConfig

__all__ = ["ConfigError", "RuntimeConfig", "load_config", "parse_config"]
