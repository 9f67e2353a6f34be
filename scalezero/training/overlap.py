"""Acting and learning at the same time (``train.overlap``).

While the collector takes the next step of every environment with an *acting copy* of the
model, a worker thread applies the updates the replay ratio owes for the data collected
before that step. PyTorch and the numba tree release the interpreter lock inside their
kernels, so with one torch thread each the two halves run on two cores.

What stays exact: the batches are drawn on the main thread before the worker starts (so the
replay is never read while it is written, and the sampling order is the single-process
one), the acting copy takes the online weights after every step (so the search always acts
with the weights of all updates so far), and the updates per environment step are those of
the replay ratio. What changes: an update does not see the one collection step running
beside it (``num_envs`` transitions per task), and is applied one step later than without
overlap. Runs with overlap are deterministic too, and resume exactly, but they differ from
runs without it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import torch


class ActingCopy:
    """A copy of the online model that only acts: the collector searches with it while the
    online model trains on another thread."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def refresh(self, model: torch.nn.Module) -> None:
        """Take ``model``'s current weights and buffers (a fresh copy where its structure changed,
        as when DPS opens a LoRA stage)."""
        ours = list(self.model.state_dict().values())
        theirs = model.state_dict()
        if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs.values())):
            self.model = copy.deepcopy(model).requires_grad_(False)
            return
        torch._foreach_copy_(ours, list(theirs.values()))

    def replace(self, model: torch.nn.Module) -> None:
        """Start again from ``model`` (its structure or its non-tensor state changed)."""
        self.model = copy.deepcopy(model).requires_grad_(False)


class BackgroundUpdates:
    """Apply a list of prepared updates on a worker thread; ``join`` returns their results in
    order (and re-raises the worker's exception, if any)."""

    def __init__(self, jobs: list[Callable[[], dict]]) -> None:
        self._jobs = jobs
        self._results: list[dict] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scalezero-learner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for job in self._jobs:
                self._results.append(job())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by join
            self._error = exc

    def join(self) -> list[dict]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._results
