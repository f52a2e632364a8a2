"""The settings layer's one error: raised for settings that cannot be used, with a message saying what to change."""

from __future__ import annotations


class SettingsError(ValueError):
    """Settings that cannot be used; the message lists each problem and how to fix it."""
