"""Gateway configuration: the typed schema and the YAML loader that validates it."""

from corral.config.loader import load_config
from corral.config.schema import Config, ModelAlias, ProviderConfig, ServerConfig

__all__ = ["Config", "ModelAlias", "ProviderConfig", "ServerConfig", "load_config"]
