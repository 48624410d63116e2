"""Datasets: modality specs, the in-memory dataset, splits, and the registered datasets."""

from mmviz.data import arrays, mfeat, synthetic  # noqa: F401  (registers the datasets)
from mmviz.data.base import ModalitySpec, MultimodalData, TensorSplit
from mmviz.data.registry import DATASETS, SplitConfig, create_dataset

try:  # avdigits registers itself when its module is present
    from mmviz.data import avdigits  # noqa: F401
except ImportError:  # pragma: no cover - only while the module is being written
    pass

__all__ = ["DATASETS", "ModalitySpec", "MultimodalData", "SplitConfig", "TensorSplit", "create_dataset"]
