"""Datasets: modality specs, the in-memory dataset, splits, and the registered datasets.

Importing this package does not import torch (the datasets are numpy); ``TensorSplit`` (torch) is imported on first
access.
"""

from typing import Any

from mmviz.data import arrays, av_benchmarks, avdigits, avfashion, mfeat, synthetic  # noqa: F401  (registers the datasets)
from mmviz.data.base import ModalitySpec, MultimodalData
from mmviz.data.registry import DATASETS, SplitConfig, create_dataset

__all__ = ["DATASETS", "ModalitySpec", "MultimodalData", "SplitConfig", "TensorSplit", "create_dataset"]


def __getattr__(name: str) -> Any:
    if name == "TensorSplit":
        from mmviz.data.split import TensorSplit

        return TensorSplit
    raise AttributeError(f"module 'mmviz.data' has no attribute {name!r}")
