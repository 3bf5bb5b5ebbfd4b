"""Configuration: TOML files validated before anything starts (see ``docs/configuration.md``)."""

from sepgw.config.loader import DEFAULT_PATHS, Config, ResolvedPlugin, load, validate
from sepgw.config.schema import ConfigError, Problem

__all__ = ["Config", "ConfigError", "DEFAULT_PATHS", "Problem", "ResolvedPlugin", "load",
           "validate"]
