"""The registry of diagnostic probes."""

from __future__ import annotations

from mmviz.registry import Registry

PROBES: Registry = Registry("probe", class_flags=("cadence",))


def create_probes(configs: dict) -> list:
    """Instantiate every enabled probe from ``{name: config}``, sorted by the probes' ``order`` then name."""
    out = []
    for name, cfg in configs.items():
        if getattr(cfg, "enabled", True):
            out.append(PROBES.get(name).factory(cfg))
    return sorted(out, key=lambda p: (getattr(p, "order", 0), getattr(p, "name", "")))
