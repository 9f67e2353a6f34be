"""Reanalyse (MuZero Reanalyse): fresh search targets for replayed windows.

Policy targets stored at collection were made by the model of that time, with the search
budget of acting; as the model improves they go stale. At sample time, a fraction of every
task's windows (``replay.reanalyse_fraction``) gets its policy targets recomputed by one
batched search of the target network over the rows of all tasks, each root given exactly
the context the actor had: the ``train.context_steps`` steps of the same episode before it.
With ``replay.reanalyse_values`` those searches also run at the windows' later positions, and
their root values replace the target network's raw values as n-step bootstraps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from scalezero.config import Config
from scalezero.model import WorldModel
from scalezero.replay import Window
from scalezero.tasks import SuiteLayout
from scalezero.training.acting import ContextHistory, search_contexts


@dataclass
class _Roots:
    """The roots of one task: window row and position of each, and their contexts."""

    rows: np.ndarray
    positions: np.ndarray
    history: ContextHistory
    legal: np.ndarray | None


def reanalysed_rows(batch_size: int, fraction: float) -> int:
    """How many of a task's ``batch_size`` windows are reanalysed (rows are sampled uniformly,
    so the first ones are a uniform subset)."""
    return min(batch_size, math.ceil(fraction * batch_size))


def _roots(window: Window, rows: int, policy_positions: int, values: bool, layout: SuiteLayout, task: int) -> _Roots:
    """Roots at the steps ``0..policy_positions-1`` of the first ``rows`` windows (and, for
    values, at every later observation that is not a terminal entry)."""
    need = np.zeros(window.is_obs.shape, dtype=bool)
    need[:rows, :policy_positions] = window.is_step[:rows, :policy_positions]
    if values:
        need[:rows, 1:] |= window.is_obs[:rows, 1:] & ~window.terminal[:rows, 1:]
    r, p = np.nonzero(need)
    context = window.context_obs.shape[1]
    # Context + window as one sequence per row; the root at window position p is slot p + C.
    seq_obs = np.concatenate([window.context_obs, window.obs], axis=1)
    seq_actions = np.concatenate([window.context_actions, window.actions], axis=1)
    seq_valid = np.concatenate([window.context_valid, window.is_obs], axis=1)
    slots = p[:, None] + np.arange(context + 1)[None, :]
    obs = seq_obs[r[:, None], slots]
    actions = seq_actions[r[:, None], slots].copy()
    actions[:, -1] = 0  # the action at the root is what the search decides
    flat = layout.pad_obs(task, obs.reshape((-1,) + obs.shape[2:]))
    history = ContextHistory.from_arrays(flat.reshape(obs.shape[:2] + flat.shape[1:]), actions, seq_valid[r[:, None], slots])
    legal = None
    if window.legal is not None:  # a final entry (values only) stores all-True: narrow to the task's set
        legal = window.legal[r, p] & layout.action_masks[task][None]
    return _Roots(r, p, history, legal)


@torch.no_grad()
def reanalyse(
    model: WorldModel,
    layout: SuiteLayout,
    windows: dict[int, Window],
    config: Config,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[int, np.ndarray] | None:
    """Rewrite the policy targets (and, in a continuous suite, the candidates they are over) of
    the reanalysed windows in place, with one batched search of ``model`` over all tasks.

    Windows must have been sampled with ``context = train.context_steps``. Returns, with
    ``replay.reanalyse_values``, task id -> ``[B, L]`` fresh root values (NaN where no search
    ran), else None.
    """
    replay = config.replay
    values = replay.reanalyse_values
    positions = replay.unroll_steps + 1
    roots = {t: _roots(w, reanalysed_rows(w.obs.shape[0], replay.reanalyse_fraction), positions, values, layout, t) for t, w in windows.items()}
    roots = {t: r for t, r in roots.items() if r.rows.size}
    fresh = {t: np.full(w.is_obs.shape, np.nan, dtype=np.float32) for t, w in windows.items()} if values else None
    if not roots:
        return fresh
    legal = None if model.continuous else np.concatenate([r.legal for r in roots.values()])
    histories = {t: r.history for t, r in roots.items()}
    result = search_contexts(model, layout, histories, legal, config.search, config.train.discount, rng, True, device)
    for t, r in roots.items():
        out = result.outputs[t]
        window = windows[t]
        policy = (r.positions < positions) & window.is_step[r.rows, r.positions]
        rows, cols = r.rows[policy], r.positions[policy]
        window.policies[rows, cols] = out.search.policy_target[policy]
        if out.candidates is not None:
            window.candidates[rows, cols] = out.candidates[policy]
        if fresh is not None:
            fresh[t][r.rows, r.positions] = out.search.root_value
    return fresh
