"""Errors a user can cause, with one message template and did-you-mean hints.

Every message is one sentence naming the field, the bad value and the valid choices. Anything that
is not an ``MmvizError`` is a bug and must surface with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MmvizError(Exception):
    """Base class for every error a user can cause (bad input, missing run, unusable store)."""


class ConfigError(MmvizError):
    """A configuration value, key or combination is invalid."""


class UnknownNameError(ConfigError):
    """A registry lookup (dataset, method, fusion, probe, view, ...) found no such name."""


class DataError(MmvizError):
    """A dataset file is missing or malformed."""


class StoreError(MmvizError):
    """The run store cannot be opened or does not hold what was asked for."""


class RunNotFoundError(StoreError):
    """No run with the given id exists in the store."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard error for an unknown registry name.

    >>> str(unknown_name("balancing method", "ogm-ge", ["baseline", "ogm_ge"]))
    "Unknown balancing method 'ogm-ge'. Did you mean 'ogm_ge'? Available: baseline, ogm_ge."
    """
    choices = sorted(str(c) for c in choices)
    return UnknownNameError(
        f"Unknown {kind} {name!r}.{did_you_mean(str(name), choices)} Available: {', '.join(choices)}."
    )
