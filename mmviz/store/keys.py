"""Metric-key parsing, run ids and process liveness: the small pure helpers behind the run store.

A metric key is ``[split/]quantity[/modality]``: lowercase snake_case segments joined by ``/``. The first
segment is the split when it is one of :data:`SPLITS`; the last is the modality when it is one of the run's
modalities or ``fused``; whatever lies between is the quantity (never empty).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable

SPLITS = frozenset({"train", "val", "test"})
FUSED = "fused"
KEY_RE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
SEGMENT_RE = re.compile(r"^[a-z0-9_]+$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged, or raise ``ValueError`` naming it when it is not a well-formed metric key."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(
            f"Metric key {key!r} is malformed. Use lowercase snake_case segments joined by '/', "
            "e.g. 'val/acc/audio' or 'grad_norm/visual'."
        )
    return key


def parse_key(key: str, modalities: Iterable[str]) -> tuple[str | None, str, str | None]:
    """Split a metric key into ``(split, quantity, modality)``.

    The split and modality are only taken off when something is left for the quantity, so
    ``'train/loss'`` is ``('train', 'loss', None)`` and a lone ``'audio'`` is ``(None, 'audio', None)``.

    >>> parse_key("val/acc/audio", ["audio", "visual"])
    ('val', 'acc', 'audio')
    >>> parse_key("grad_norm_pre/visual", ["audio", "visual"])
    (None, 'grad_norm_pre', 'visual')
    >>> parse_key("coef/ogm_ge/audio", ["audio"])
    (None, 'coef/ogm_ge', 'audio')
    """
    segments = validate_key(key).split("/")
    split = modality = None
    if len(segments) > 1 and segments[0] in SPLITS:
        split = segments.pop(0)
    if len(segments) > 1 and (segments[-1] == FUSED or segments[-1] in set(modalities)):
        modality = segments.pop()
    return split, "/".join(segments), modality


def validate_modalities(modalities: Iterable[str]) -> list[str]:
    """Return the modality names as a list, or raise ``ValueError`` when one cannot appear in a metric key."""
    names = list(modalities)
    if isinstance(modalities, str) or not names:
        raise ValueError(f"Modalities must be a non-empty list of names, got {modalities!r}.")
    for name in names:
        if not isinstance(name, str) or not SEGMENT_RE.match(name) or name == FUSED:
            raise ValueError(
                f"Modality name {name!r} is invalid. Use lowercase snake_case (not 'fused'), e.g. 'audio'."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"Modality names must be unique, got {names!r}.")
    return names


def new_run_id() -> str:
    """Return a short, readable run id that sorts by creation time, e.g. ``'20250101-120000-a3f9'``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` unchanged, or raise ``ValueError`` when it is unsafe as a folder name."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise ValueError(f"Run id {run_id!r} is invalid. Use letters, digits, '-', '_' or '.' (at most 64).")
    return run_id


def pid_alive(pid: int | None) -> bool:
    """Return whether a process with this id exists on this host and is not a zombie."""
    if pid is None or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS) or the process just went away between the two checks
    return state not in ("Z", "X")
