"""One Settings model, read from bastion.toml and BASTION_* environment variables, validated at start-up.

Every option has a safe default. A typo or an unsafe combination stops the server with a message that says
what to change, rather than being ignored.

This package imports nothing else of Bastion's (tests/test_layers.py holds it to that), so any layer may read
settings. Its modules:

- model.py: Settings, the root; server.py: its top-level options (host, port, HTTP limits, ...);
- one module per section: authorization.py ([authorization_server] and its upstream providers), resource.py
  ([resource] and its issuers), worker.py, store.py, policy.py;
- load.py: TOML + BASTION_* loading and describe(); check.py: the start-up checks behind Settings.check();
- secrets.py: reading secrets from the environment or files; secret_strength.py (+ common_words.py): how hard
  a secret is to guess; values.py: checks of single values; errors.py: SettingsError.
"""

from __future__ import annotations

from .authorization import AuthorizationServerSettings, UpstreamSettings
from .errors import SettingsError
from .load import ENV_PREFIX
from .model import Settings
from .policy import PolicySettings
from .resource import ASYMMETRIC_ALGORITHMS, PRESETS, IssuerSettings, ResourceSettings
from .secrets import read_secret
from .server import ServerSettings
from .store import StoreSettings
from .values import https_url, is_loopback_host, short_name
from .worker import WorkerSettings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "ENV_PREFIX",
    "PRESETS",
    "AuthorizationServerSettings",
    "IssuerSettings",
    "PolicySettings",
    "ResourceSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "UpstreamSettings",
    "WorkerSettings",
    "https_url",
    "is_loopback_host",
    "read_secret",
    "short_name",
]
