"""n-step bootstrapped value targets over a sampled window (pure numpy, hand-checkable)."""

from __future__ import annotations

import numpy as np


def nstep_value_targets(
    rewards: np.ndarray,
    is_step: np.ndarray,
    is_obs: np.ndarray,
    terminal: np.ndarray,
    bootstrap: np.ndarray,
    discount: float,
    td_steps: int,
    num_targets: int,
    horizon: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Value targets z_k for the first ``num_targets`` positions of windows of length ``L``.

    z_k = sum_{i<m} gamma^i r_{k+i} + gamma^m V(k+m), where m = min(n, steps left in the
    stored episode). After a terminated episode V = 0; after a truncated one V is the
    target network's value of the last observation. Where the window reaches the write
    head of an unfinished episode (the next observation is not stored yet), the target
    uses one step fewer and bootstraps from the last stored observation. The final entry
    of a terminated episode gets target 0; a truncated final entry is masked.

    Args:
        rewards, is_step, is_obs, terminal: ``[B, L]`` from :class:`~scalezero.replay.buffer.Window`.
        bootstrap: ``[B, L]`` target-network values of each position's observation.
        discount: gamma. td_steps: n. num_targets: K+1; needs ``L >= num_targets + td_steps``.
        horizon: optional ``[B]`` per-window n in ``[1, td_steps]`` (a shorter horizon for
            older windows, from their ``Window.ages``: ``replay.td_age_steps``); None: n for all.

    Returns:
        ``(targets [B, num_targets] float32, mask [B, num_targets] bool)``.
    """
    batch, length = rewards.shape
    if length < num_targets + td_steps:
        raise ValueError(f"window length {length} < num_targets {num_targets} + td_steps {td_steps}")
    rows = np.arange(batch)
    if horizon is None:
        horizon = np.full(batch, td_steps)
    horizon = np.asarray(horizon)
    if horizon.shape != (batch,) or horizon.min(initial=1) < 1 or horizon.max(initial=1) > td_steps:
        raise ValueError(f"horizon must be [B={batch}] integers in [1, {td_steps}], got shape {horizon.shape}")
    within = np.arange(td_steps)[None, :] < horizon[:, None]
    powers = discount ** np.arange(td_steps + 1)
    targets = np.zeros((batch, num_targets), dtype=np.float64)
    for k in range(num_targets):
        run = np.cumprod(is_step[:, k : k + td_steps] & within, axis=1)  # consecutive steps from k, within the horizon
        m = run.sum(axis=1)
        at_head = (m > 0) & ~is_obs[rows, k + m]
        m = np.where(at_head, m - 1, m)
        end = k + m
        used = np.arange(td_steps)[None, :] < m[:, None]
        ret = (rewards[:, k : k + td_steps] * powers[None, :td_steps] * used).sum(axis=1)
        boot = np.where(terminal[rows, end], 0.0, bootstrap[rows, end]) * powers[m]
        targets[:, k] = np.where(is_step[:, k], ret + boot, 0.0)
    mask = is_step[:, :num_targets] | terminal[:, :num_targets]
    return targets.astype(np.float32), mask
