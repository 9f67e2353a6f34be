"""Gradient-conflict diagnostic (ScaleZero's analysis): do tasks pull shared weights apart?

Every ``train.conflict_every`` updates, each task's own loss is differentiated with respect
to the shared transformer parameters, in two groups: the *backbone* (attention, norms,
dense or shared-expert FFNs, routers) and the routed MoE *experts*. For each group we log
the mean pairwise cosine similarity of the task gradients, the fraction of task pairs whose
gradients conflict (cosine < 0) and the conflict strength (mean over pairs of max(0, -cosine)).
The fraction counts a pair of nearly orthogonal gradients (cosine -0.01) as a conflict; the
strength weighs each pair by how much it conflicts, so it tells harmful conflict from
orthogonality (expert gradients of tasks routed to different experts). Costs one extra
backward pass per task.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch

from scalezero.model import WorldModel
from scalezero.model.moe import MoE


def shared_parameter_groups(model: WorldModel) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable transformer parameters split into ``backbone`` and ``experts`` (empty when dense)."""
    expert_ids = {
        id(p)
        for module in model.transformer.modules()
        if isinstance(module, MoE)
        for p in module.experts.parameters()
    }
    groups: dict[str, list[torch.nn.Parameter]] = {"backbone": [], "experts": []}
    for p in model.transformer.parameters():
        if p.requires_grad:
            groups["experts" if id(p) in expert_ids else "backbone"].append(p)
    return groups


class PairStats(NamedTuple):
    """Pairwise statistics of task gradients (NaN when no pair has two nonzero gradients)."""

    mean_cosine: float
    fraction_negative: float
    conflict_strength: float


def pairwise_conflict(grads: torch.Tensor) -> PairStats:
    """``grads [T, P]`` -> statistics over task pairs of their gradients' cosine similarity.

    Pairs where either gradient is zero (e.g. an expert no token of that task reached) have
    no direction and are left out.
    """
    norms = grads.norm(dim=1)
    cosines = [
        float(grads[i] @ grads[j] / (norms[i] * norms[j]))
        for i, j in itertools.combinations(range(grads.shape[0]), 2)
        if norms[i] > 0 and norms[j] > 0
    ]
    if not cosines:
        return PairStats(float("nan"), float("nan"), float("nan"))
    n = len(cosines)
    return PairStats(sum(cosines) / n, sum(c < 0 for c in cosines) / n, sum(max(0.0, -c) for c in cosines) / n)


def per_task_gradients(model: WorldModel, task_totals: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """``[T, P]``: each task's loss differentiated w.r.t. ``params`` (flattened, zeros where a
    parameter is unused by that task). The graph is kept for the training step that follows."""
    rows = []
    for t in range(task_totals.shape[0]):
        grads = torch.autograd.grad(task_totals[t], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)]))
    return torch.stack(rows)


def gradient_conflict(model: WorldModel, task_totals: torch.Tensor) -> dict[str, float]:
    """Conflict statistics from the per-task losses ``task_totals [T]`` (graph still alive).

    Returns ``conflict/<group>/<stat>`` for each field of :class:`PairStats` and the groups
    ``all`` (backbone and experts together), ``backbone`` and, with MoE, ``experts``.
    """
    groups = shared_parameter_groups(model)
    split = sum(p.numel() for p in groups["backbone"])
    flat = per_task_gradients(model, task_totals, groups["backbone"] + groups["experts"])
    out: dict[str, float] = {}
    selections = {"all": slice(None), "backbone": slice(0, split)}
    if groups["experts"]:
        selections["experts"] = slice(split, None)
    for name, sel in selections.items():
        for stat, value in pairwise_conflict(flat[:, sel])._asdict().items():
            out[f"conflict/{name}/{stat}"] = value
    return out
