"""Feature extraction from a model under the model contract, with every module's train/eval flag restored.

What methods and probes both need of a live model: its encoders' features on unmodified inputs in eval mode
(Re-learning's diagnosis, PMR's prototypes, the probes' train-split features), and the fused logits of every
modality coalition with the absent modalities' inputs zeroed (Shapley values).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from mmviz.measures.attribution import coalitions

Batch = dict[str, torch.Tensor]


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode and restore every submodule's own train/eval flag afterwards (a module that
    was in eval mode inside a training model stays so)."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _autocast(autocast: Callable[[], contextlib.AbstractContextManager] | None):
    return autocast() if autocast is not None else contextlib.nullcontext()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    batches: Iterable[Batch],
    modalities: Sequence[str],
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    limit: int | None = None,
    to_cpu: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoder features ``{m: (N, D_m)}`` (float32) and labels ``(N,)`` of ``batches``, in eval mode, no grad.

    Args:
        model: a model under the contract (``encode(batch) -> {m: (B, D_m)}``).
        batches: dict batches with a ``'label'`` entry; consumed in order (at most ``limit`` of them).
        modalities: which features to keep, in order.
        autocast: the run's autocast context factory (``None``: full precision).
        limit: stop after this many batches (``None``: all).
        to_cpu: move the results to the host (else they stay on the model's device).
    """
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    labels: list[torch.Tensor] = []
    with eval_mode(model):
        for i, batch in enumerate(batches):
            if limit is not None and i >= limit:
                break
            with _autocast(autocast):
                z = model.encode(batch)
            for m in modalities:
                feats[m].append(z[m].float())
            labels.append(batch["label"])
    out = {m: torch.cat(v) for m, v in feats.items()}
    y = torch.cat(labels)
    if to_cpu:
        out, y = {m: v.cpu() for m, v in out.items()}, y.cpu()
    return out, y


def concat_features(features: dict[str, torch.Tensor], modalities: Sequence[str]) -> torch.Tensor:
    """The fused representation the measures use: per-modality features concatenated in modality order."""
    return torch.cat([features[m] for m in modalities], dim=1)


def zero_inputs(input_shapes: dict[str, tuple[int, ...]], device: torch.device | str) -> Batch:
    """One all-zero input per modality, ``(1, *shape)``: a modality's input "removed" (BalanceMM, AGM)."""
    return {m: torch.zeros((1, *shape), device=device) for m, shape in input_shapes.items()}


@torch.no_grad()
def compute_coalition_logits(
    model: nn.Module,
    features: dict[str, torch.Tensor],
    input_shapes: dict[str, tuple[int, ...]],
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    full: torch.Tensor | None = None,
) -> dict[frozenset[str], torch.Tensor]:
    """Fused logits ``(N, C)`` for every coalition S of modalities (the empty one too), the others' inputs zeroed.

    ``features`` are the encoders' outputs ``(N, D_m)`` on the real inputs, ``input_shapes`` the per-sample input
    shapes. In eval mode an encoder sees one modality and one sample at a time, so a zeroed input gives one
    feature vector, computed once per modality; the logits for S are ``model.fuse`` of the real features of S and
    the zero-input features of the others, i.e. those of the whole model on the masked batch. The empty
    coalition's rows are all the same: fused once and repeated. ``full``: the model's own fused logits ``(N, C)``
    on these inputs (an evaluation that was the model's forward), taken for the coalition of all modalities
    instead of fusing again, so that its accuracy is the evaluation's. Results stay on the model's device (float32).
    """
    mods = tuple(features)
    device = next(model.parameters()).device
    real = {m: z.to(device) for m, z in features.items()}
    n = len(next(iter(real.values()))) if real else 0
    out: dict[frozenset[str], torch.Tensor] = {}
    with eval_mode(model), _autocast(autocast):
        zero = {m: z.float() for m, z in model.encode(zero_inputs(input_shapes, device)).items()}
        for s in coalitions(mods):
            if not s:
                out[s] = model.fuse(zero).logits.float().expand(n, -1).contiguous()
            elif full is not None and len(s) == len(mods):
                out[s] = full.to(device).float()
            else:
                out[s] = model.fuse({m: real[m] if m in s else zero[m].expand_as(real[m]) for m in mods}).logits.float()
    return out


class HostCopy:
    """A nested state (dicts, lists, tuples of tensors and plain values) copied to the host, without blocking on a GPU.

    CUDA tensors are copied into pinned host memory with non-blocking copies on the current stream and one event
    recorded after them, so the caller's thread goes on (the next epoch's first steps overlap the transfer; later
    in-place updates of the sources are queued after the copies on the same stream). :meth:`result` waits for the
    event and returns the copy, e.g. on a writer thread. CPU tensors are cloned when ``clone`` (the state is
    updated in place after this call, e.g. weights and optimiser moments) and else kept as they are. Ordered dicts
    keep their type and their ``_metadata`` (a model's state dict needs it to load).
    """

    def __init__(self, state, *, clone: bool = True) -> None:
        self._clone = clone
        self._event = None
        self._value = self._copy(state)
        if self._event is not None:
            self._event.record()

    def _copy(self, obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            if t.is_cuda:
                if self._event is None:
                    self._event = torch.cuda.Event()
                host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                return host.copy_(t, non_blocking=True)
            if not t.is_cpu:
                return t.to("cpu")
            return t.clone() if self._clone else t
        if isinstance(obj, dict):
            out = {k: self._copy(v) for k, v in obj.items()}
            if isinstance(obj, OrderedDict):
                out = OrderedDict(out)
                if hasattr(obj, "_metadata"):
                    out._metadata = obj._metadata
            return out
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v) for v in obj)
        return obj

    @property
    def pending(self) -> bool:
        """Whether device-to-host copies may still be in flight."""
        return self._event is not None and not self._event.query()

    def result(self):
        """The host copy, once every transfer has completed."""
        if self._event is not None:
            self._event.synchronize()
        return self._value
