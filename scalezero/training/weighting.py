"""Task weights for the learner's loss: uniform, or larger for tasks far from their target.

With ``train.task_weighting: difficulty`` each task's loss is weighted by how much of the way
from a random policy to its target return it still has to go, measured on its recent
training episodes. Tasks that are already solved then pull less on the shared weights and
lagging tasks more, without ever dropping a task (the weights stay positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scalezero.tasks.base import TaskSpec


def task_progress(returns: Sequence[float], spec: TaskSpec) -> float:
    """Fraction of the way from the random return to the target, clipped to ``[0, 1]``.

    The random return is the spec's ``random_return`` where known, else 0. With no finished
    episode yet the progress is 0 (every task counts as unsolved). A target at or below the
    random return has no scale to measure progress on: the progress is then 1 once the mean
    return reaches the target, else 0.
    """
    if len(returns) == 0:
        return 0.0
    mean = float(np.mean(returns))
    floor = spec.random_return if spec.random_return is not None else 0.0
    span = spec.target_return - floor
    if span <= 0:
        return 1.0 if mean >= spec.target_return else 0.0
    return float(np.clip((mean - floor) / span, 0.0, 1.0))


def difficulty_weights(progress: Sequence[float], temperature: float) -> np.ndarray:
    """``softmax((1 - progress) / temperature)`` scaled to mean 1, so the loss scale is that of
    uniform weighting; equal progress gives equal weights, a large temperature tends to uniform."""
    gap = 1.0 - np.asarray(progress, dtype=np.float64)
    logits = gap / temperature
    w = np.exp(logits - logits.max())
    return w * (len(w) / w.sum())
