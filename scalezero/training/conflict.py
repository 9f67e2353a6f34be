"""Gradient-conflict diagnostic (ScaleZero's analysis): do tasks pull shared weights apart?

Every ``train.conflict_every`` updates, each task's own loss is differentiated with respect
to the shared transformer parameters, in two groups: the *backbone* (attention, norms,
dense or shared-expert FFNs, routers) and the routed MoE *experts*. For each group we log
the mean pairwise cosine similarity of the task gradients and the fraction of task pairs
whose gradients conflict (cosine < 0). Costs one extra backward pass per task.
"""

from __future__ import annotations

import itertools

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


def pairwise_conflict(grads: torch.Tensor) -> tuple[float, float]:
    """``grads [T, P]`` -> (mean pairwise cosine similarity, fraction of pairs with cosine < 0).

    Pairs where either gradient is zero (e.g. an expert no token of that task reached) have
    no direction and are left out; with fewer than one valid pair both figures are NaN.
    """
    norms = grads.norm(dim=1)
    cosines = [
        float(grads[i] @ grads[j] / (norms[i] * norms[j]))
        for i, j in itertools.combinations(range(grads.shape[0]), 2)
        if norms[i] > 0 and norms[j] > 0
    ]
    if not cosines:
        return float("nan"), float("nan")
    return sum(cosines) / len(cosines), sum(c < 0 for c in cosines) / len(cosines)


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

    Returns ``conflict/<group>/mean_cosine`` and ``conflict/<group>/fraction_negative`` for
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
        mean_cos, frac_neg = pairwise_conflict(flat[:, sel])
        out[f"conflict/{name}/mean_cosine"] = mean_cos
        out[f"conflict/{name}/fraction_negative"] = frac_neg
    return out
