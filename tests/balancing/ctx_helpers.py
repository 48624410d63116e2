"""A minimal TrainContext for testing balancing-method hooks on hand-made tensors."""

from types import SimpleNamespace

import torch

from mmviz.training.context import TrainContext


def fake_ctx(logged: list, *, model=None, modalities=None, num_classes: int = 3) -> TrainContext:
    """A CPU context whose ``log`` appends ``(key, value)`` to ``logged``; modalities come from ``model`` if given."""
    if model is not None:
        modalities, num_classes = model.modalities, model.num_classes
    data = SimpleNamespace(modality_names=tuple(modalities), num_classes=num_classes)
    return TrainContext(
        model=model,
        data=data,
        splits={},
        device=torch.device("cpu"),
        config=None,
        run_dir=None,
        log=lambda k, v: logged.append((k, v)),
        event=lambda k, p: None,
    )
