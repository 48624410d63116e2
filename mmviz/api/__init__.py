"""Watch your own training loop: a few calls make it appear in the dashboard like a built-in run.

>>> run = mmviz.api.watch(model, train_loader=train, val_loader=val, epochs=30, optimizer=opt, method="ogm_ge")
>>> for epoch in range(30):
...     for batch in train:
...         out = model(run.transform(batch))
...         loss = run.loss(out, batch)
...         opt.zero_grad(); loss.backward()
...         run.after_backward(out, batch, loss)     # probes read the gradients; OGM-GE modulates them
...         opt.step()
...     run.end_epoch()                              # val accuracy, epoch probes, snapshots, the method's epoch end
>>> run.close()                                      # or use `with mmviz.api.watch(...) as run:`

The model follows mmviz's model contract (a :class:`models.MultimodalNet`, or your own model wrapped by the
adapter); batches are dicts of tensors keyed by modality name plus ``"label"``. The run's status, heartbeats,
metrics, events and snapshots go to the workspace's store exactly as a built-in run's, so the Runs, Live, Compare
and Embeddings pages and ``mmviz export`` work on it; restart and fork are refused (the code is yours). A crash
marks it failed; a killed process leaves it lost by heartbeat (see :mod:`mmviz.api.lifecycle`).
"""

from __future__ import annotations

from typing import Any

from mmviz.api.run import Run

__all__ = ["Run", "watch"]


def watch(model: Any, **kwargs: Any) -> Run:
    """Open a run of your own loop in a workspace (see :class:`Run` for the arguments) and return it."""
    return Run(model, **kwargs)
