"""Datasets: modality specs, the in-memory dataset, splits, and the registered datasets."""

from mmviz.data import arrays, av_benchmarks, avdigits, avfashion, mfeat, synthetic  # noqa: F401  (registers the datasets)
from mmviz.data.base import ModalitySpec, MultimodalData, TensorSplit
from mmviz.data.registry import DATASETS, SplitConfig, create_dataset

__all__ = ["DATASETS", "ModalitySpec", "MultimodalData", "SplitConfig", "TensorSplit", "create_dataset"]
