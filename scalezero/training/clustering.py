"""Gradient-based task clustering (Mixture-of-World-Models), and experts per cluster.

Every ``train.cluster_every`` updates each task's gradient on the shared transformer weights is
computed (the same per-task gradients as the conflict diagnostic); tasks are grouped by
average-linkage agglomerative clustering on cosine distance. With MoE layers, each cluster then
gets its own subset of the routed experts (task-conditioned experts beside the shared backbone
and the always-on shared expert): tasks whose gradients agree share experts, tasks whose
gradients conflict stop writing into each other's experts.
"""

from __future__ import annotations

import numpy as np
import torch

from scalezero.training.conflict import per_task_gradients, shared_parameter_groups


def cosine_distances(grads: np.ndarray) -> np.ndarray:
    """``[T, P]`` -> ``[T, T]`` of ``1 - cosine`` (a zero gradient is at distance 1 from all)."""
    norms = np.linalg.norm(grads, axis=1, keepdims=True)
    unit = np.divide(grads, norms, out=np.zeros_like(grads), where=norms > 0)
    return 1.0 - unit @ unit.T


def cluster_tasks(grads: np.ndarray, num_clusters: int, merge_below: float = 0.3, max_distance: float = 1.0) -> np.ndarray:
    """Average-linkage agglomerative clustering of task gradients ``[T, P]`` by cosine distance.

    The closest pair of clusters merges when their average distance is below ``merge_below``
    (gradients that clearly agree), or, while there are more than ``num_clusters`` clusters,
    when it is below ``max_distance`` (1.0 = orthogonal: tasks whose gradients conflict are never
    merged). Returns labels ``[T]`` numbered in order of each cluster's first task.
    """
    dist = cosine_distances(np.asarray(grads, dtype=np.float64))
    clusters: list[list[int]] = [[t] for t in range(dist.shape[0])]
    while len(clusters) > 1:
        best, pair = np.inf, (0, 1)
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                d = float(dist[np.ix_(clusters[i], clusters[j])].mean())
                if d < best - 1e-12:
                    best, pair = d, (i, j)
        if not (best < merge_below or (len(clusters) > num_clusters and best < max_distance)):
            break
        i, j = pair
        clusters[i] = sorted(clusters[i] + clusters[j])
        del clusters[j]
    labels = np.zeros(dist.shape[0], dtype=np.int64)
    for c, members in enumerate(sorted(clusters, key=min)):
        labels[members] = c
    return labels


def experts_per_cluster(labels: np.ndarray, num_experts: int) -> np.ndarray:
    """``[T, E]`` bool: routed experts dealt round-robin to clusters (each cluster gets at least
    one; with more clusters than experts, clusters share experts round-robin)."""
    num_clusters = int(labels.max()) + 1
    owner = np.arange(num_experts) % num_clusters  # expert e belongs to cluster e mod C
    allowed = np.zeros((labels.size, num_experts), dtype=bool)
    for t, c in enumerate(labels):
        allowed[t] = owner == c if num_clusters <= num_experts else np.arange(num_experts) == c % num_experts
    return allowed


def recluster(model: torch.nn.Module, task_totals: torch.Tensor, task_ids: list[int], num_clusters: int, top_k: int) -> np.ndarray:
    """Cluster the batch's tasks by their gradients on shared weights (graph still alive) and,
    with MoE, restrict each task's routing to its cluster's experts. Returns labels over
    ``task_ids`` (tasks absent from the batch keep their experts)."""
    groups = shared_parameter_groups(model)
    grads = per_task_gradients(model, task_totals, groups["backbone"] + groups["experts"]).cpu().numpy()
    labels = cluster_tasks(grads, num_clusters)
    experts = model.cfg.moe_num_experts
    if experts > 0:
        allowed = experts_per_cluster(labels, experts)
        if allowed.sum(axis=1).min() >= top_k:  # each token must still have top_k experts to choose from
            with torch.no_grad():
                model.expert_allowed[torch.as_tensor(task_ids)] = torch.as_tensor(allowed, device=model.expert_allowed.device)
    return labels
