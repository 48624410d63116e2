"""A minimal TrainContext for testing balancing-method hooks on hand-made tensors."""

import torch

from mmviz.contracts import TrainContext


def fake_ctx(logged: list, *, model=None, modalities=None, num_classes: int = 3) -> TrainContext:
    """A CPU context whose ``log`` appends ``(key, value)`` to ``logged``; modalities come from ``model`` if given."""
    if model is not None:
        modalities, num_classes = model.modalities, model.num_classes
    return TrainContext(
        model=model,
        modalities=tuple(modalities),
        num_classes=num_classes,
        splits={},
        device=torch.device("cpu"),
        log=lambda k, v: logged.append((k, v)),
    )
