"""The settings every CLI command loads, with one exit code for invalid ones."""

from __future__ import annotations

import click

from inferq.core.settings import Settings, SettingsError

EXIT_USAGE = 2


class UsageProblem(click.ClickException):
    # Exit 2, like a usage error: the command line or environment must change.
    exit_code = EXIT_USAGE


class InvalidSettings(UsageProblem):
    pass


def load_settings(**overrides: object) -> Settings:
    """Settings from INFERQ_* variables plus the command's options (None: not given)."""
    try:
        return Settings.load(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise InvalidSettings(f"invalid settings: {exc}") from None
