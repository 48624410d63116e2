"""An adapter putting a model written without mmviz in mind behind the model contract, with no change to its class.

Models in the papers' official repositories look like this (OGM-GE's ``AVClassifier``)::

    class AVClassifier(nn.Module):
        def __init__(self):
            self.audio_net, self.visual_net = resnet18(...), resnet18(...)
            self.fusion_module = ConcatFusion(1024, n_classes)      # fc_out = nn.Linear(1024, n_classes)

        def forward(self, audio, visual):
            a = torch.flatten(F.adaptive_avg_pool2d(self.audio_net(audio), 1), 1)   # pooled inside forward
            v = torch.flatten(F.adaptive_avg_pool2d(self.visual_net(visual), 1), 1)
            a, v, out = self.fusion_module(a, v)
            return a, v, out

:class:`ModelAdapter` wraps it by naming its parts::

    net = ModelAdapter(AVClassifier(), encoders={"audio": "audio_net", "visual": "visual_net"},
                       fusion="fusion_module", head="fusion_module.fc_out")

It calls the model with the batch's tensors in modality order (``forward(audio, visual)``), takes the fused logits
from its output (a tensor, or the last element of a tuple), and takes each modality's features where the model
forms them: the positional inputs of the fusion module (a forward pre-hook), so pooling done inside ``forward``
is included; without a fusion module, each encoder's output. With a linear head over the concatenated features the
per-modality logits are its exact split (``W_m z_m + b / M``). Bad wrapping is refused before training, in one
sentence, by :meth:`ModelAdapter.check_batch` (``fit`` calls it on the first batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mmviz.contracts import Batch, ModelOutput, MultimodalModel
from mmviz.errors import ConfigError

__all__ = ["ModelAdapter"]


def _submodule(model: nn.Module, path: str, what: str, owner: str) -> nn.Module:
    """``model.get_submodule(path)`` or a one-sentence ConfigError naming the top-level submodules."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = ", ".join(repr(n) for n, _ in model.named_children()) or "none"
        raise ConfigError(
            f"The {what} is {path!r}, which is not a submodule of {owner}; its submodules are {names}."
        ) from None


def _default_logits(output: Any) -> torch.Tensor:
    """The fused logits in a model's output: the tensor itself, or the last element of a tuple or list."""
    return output[-1] if isinstance(output, (tuple, list)) else output


class ModelAdapter(MultimodalModel):
    """Wrap ``model`` behind the contract by naming its encoders, fusion module and linear head.

    Args:
        model: the user's ``nn.Module`` (not changed; it becomes the submodule ``model``).
        encoders: per modality the dotted name of its encoder submodule, in the order of ``forward``'s arguments
            (unless ``inputs`` says otherwise); the order is the modality order everywhere.
        fusion: dotted name of the module whose positional inputs are the per-modality features (in modality
            order); None: the encoders' outputs are the features.
        head: dotted name of an ``nn.Linear`` producing the fused logits from the concatenated features (gives the
            ``head_split``, ``unimodal_logits`` and ``final_linear`` capabilities).
        inputs: the batch keys passed positionally to ``forward`` (default: the modalities in order).
        logits: picks the fused logits ``(B, C)`` from ``forward``'s output (default: last element of a tuple).
        example: a batch to check the wrapping with right away (else :meth:`check_batch` before training).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        encoders: dict[str, str],
        fusion: str | None = None,
        head: str | None = None,
        inputs: Sequence[str] | None = None,
        logits: Callable[[Any], torch.Tensor] = _default_logits,
        example: Batch | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.owner = self.display_name = type(model).__name__
        if not encoders:
            raise ConfigError(f"The 'encoders' of ModelAdapter must name at least one module of {self.owner}.")
        self.modalities = tuple(encoders)
        self.encoder_names = dict(encoders)
        self._encoders = {
            m: _submodule(model, p, f"encoder of modality {m!r}", self.owner) for m, p in encoders.items()
        }
        self.fusion_name, self.head_name = fusion, head
        self._fusion = _submodule(model, fusion, "fusion module", self.owner) if fusion else None
        self._head = _submodule(model, head, "head", self.owner) if head else None
        if self._head is not None and not isinstance(self._head, nn.Linear):
            raise ConfigError(
                f"The head {head!r} of {self.owner} is a {type(self._head).__name__}, not an nn.Linear; "
                "name the linear layer that produces the logits."
            )
        self.inputs = tuple(inputs) if inputs is not None else self.modalities
        self._pick = logits
        self._dims: dict[str, int] | None = None
        self.num_classes = int(self._head.out_features) if self._head is not None else 0
        caps = {"fuse"} if self._fusion is not None else set()
        if self._head is not None:
            caps |= {"final_linear"}
        self.capabilities = frozenset(caps)
        if example is not None:
            self.check_batch(example)

    # ----- running the user's model --------------------------------------------------------------------
    def _run(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, set[str]]:
        """Call the model on ``batch``; return the captured features, the fused logits and the encoders called."""
        feats: dict[str, torch.Tensor] = {}
        called: set[str] = set()
        handles = []
        for m, enc in self._encoders.items():

            def seen(module, args, output, m=m):
                called.add(m)
                if self._fusion is None:
                    feats[m] = output

            handles.append(enc.register_forward_hook(seen))
        if self._fusion is not None:

            def take(module, args):
                for m, z in zip(self.modalities, args, strict=False):
                    feats[m] = z

            handles.append(self._fusion.register_forward_pre_hook(take))
        try:
            missing = [k for k in self.inputs if k not in batch]
            if missing:
                raise ConfigError(
                    f"The batch has no {missing[0]!r} for {self.owner}.forward; its keys are "
                    f"{', '.join(map(repr, batch))}."
                )
            output = self.model(*[batch[k] for k in self.inputs])
        finally:
            for h in handles:
                h.remove()
        return feats, self._pick(output), called

    def _unimodal(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        if "unimodal_logits" not in self.capabilities:
            return {m: None for m in self.modalities}
        k = len(self.modalities)
        return {m: feats[m] @ self.head_weight(m).t() + self._head.bias / k for m in self.modalities}

    def forward(self, batch: Batch) -> ModelOutput:
        feats, logits, _ = self._run(batch)
        return ModelOutput(features=feats, logits=logits, unimodal_logits=self._unimodal(feats))

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The features where the model forms them (one forward of the whole model)."""
        return self._run(batch)[0]

    def fuse(self, features: dict[str, torch.Tensor]) -> ModelOutput:
        """Call the fusion module on precomputed features (capability ``fuse``)."""
        logits = self._pick(self._fusion(*[features[m] for m in self.modalities]))
        return ModelOutput(features=features, logits=logits, unimodal_logits=self._unimodal(features))

    # ----- the contract's parts ----------------------------------------------------------------------
    def encoder(self, modality: str) -> nn.Module:
        return self._encoders[modality]

    @property
    def feature_dims(self) -> dict[str, int]:
        if self._dims is None:
            raise ConfigError(f"The adapter of {self.owner} has not seen a batch yet; call check_batch(batch) first.")
        return dict(self._dims)

    def head_weight(self, modality: str) -> torch.Tensor:
        start = 0
        for m in self.modalities:
            if m == modality:
                break
            start += self.feature_dims[m]
        return self._head.weight[:, start : start + self.feature_dims[modality]]

    def final_linear(self) -> nn.Linear:
        return self._head

    # ----- checking the wrapping -----------------------------------------------------------------------
    @torch.no_grad()
    def check_batch(self, batch: Batch) -> None:
        """Run the model once on ``batch`` (eval mode, state restored) and refuse bad wrapping in one sentence."""
        modes = [(mod, mod.training) for mod in self.modules()]
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        head_in: list[torch.Tensor] = []
        handle = self._head.register_forward_pre_hook(lambda mod, args: head_in.append(args[0])) if self._head else None
        self.eval()
        try:
            feats, logits, called = self._run(batch)
        finally:
            if handle is not None:
                handle.remove()
            for mod, training in modes:
                mod.training = training
            self.model.load_state_dict(saved)
        for m in self.modalities:
            if m not in called:
                raise ConfigError(
                    f"The encoder {self.encoder_names[m]!r} of modality {m!r} is never called by "
                    f"{self.owner}.forward; name the module that encodes {m!r}."
                )
        where = f"the inputs of {self.fusion_name!r}" if self._fusion is not None else "its encoder's output"
        n = len(batch[self.inputs[0]])
        for m in self.modalities:
            z = feats.get(m)
            if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] != n:
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise ConfigError(
                    f"The features of modality {m!r} taken at {where} have shape {shape}, not (batch, dim) = ({n}, D); "
                    "name the module whose inputs are the pooled per-modality features as the fusion."
                )
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != n:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ConfigError(
                f"The fused logits taken from {self.owner}.forward's output have shape {shape}, not (batch, classes); "
                "pass logits= to pick them from the output."
            )
        self._dims = {m: int(feats[m].shape[1]) for m in self.modalities}
        self.num_classes = int(logits.shape[1])
        if self._head is not None:
            cat = torch.cat([feats[m] for m in self.modalities], dim=1)
            if head_in and head_in[-1].shape == cat.shape and torch.allclose(head_in[-1], cat):
                self.capabilities = self.capabilities | {"head_split", "unimodal_logits"}
