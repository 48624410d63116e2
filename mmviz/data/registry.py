"""The dataset registry and the split settings every dataset config shares."""

from __future__ import annotations

import dataclasses

from mmviz.config import Config, param
from mmviz.data.base import MultimodalData
from mmviz.errors import ConfigError
from mmviz.registry import Registry

DATASETS: Registry[MultimodalData] = Registry("dataset")


@dataclasses.dataclass(frozen=True)
class SplitConfig(Config):
    """Split settings shared by all dataset configs (fixed by ``split_seed``, not by the run seed)."""

    val_fraction: float = param(
        0.15, "Fraction of each class held out for validation (model selection).", low=0.01, high=0.5
    )
    test_fraction: float = param(0.15, "Fraction of each class held out for the final test.", low=0.01, high=0.5)
    split_seed: int = param(
        0, "Seed of the train/val/test split (kept fixed so runs are comparable).", low=0, high=2**31 - 1
    )
    probe_size: int = param(
        2000, "Size of the fixed stratified val subset used for per-epoch snapshots.", low=10, high=20000
    )

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                f"The 'val_fraction' and 'test_fraction' parameters of {self.title()} must sum to less than 0.9. "
                f"Got {self.val_fraction!r} + {self.test_fraction!r} instead."
            )


def dataset_modalities(name: str, config: Config | None = None) -> tuple[str, ...]:
    """The modality names dataset ``name`` gives with ``config``, without loading it when the dataset declares them.

    A dataset declares them with the ``modalities`` flag of its registration: a tuple, or a function of its config
    that reads nothing big (the dashboard calls it when it creates a run). Otherwise the dataset is built.
    """
    entry = DATASETS.get(name)
    config = config if config is not None else entry.config_cls()
    declared = entry.flags.get("modalities")
    if declared is None:
        return tuple(create_dataset(name, config).modality_names)
    return tuple(declared(config) if callable(declared) else declared)


def create_dataset(name: str, config: Config | None = None) -> MultimodalData:
    """Build dataset ``name`` with ``config`` (its defaults when None)."""
    entry = DATASETS.get(name)
    return entry.factory(config if config is not None else entry.config_cls())
