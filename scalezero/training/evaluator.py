"""Greedy evaluation on separate env copies: one episode per copy, search without noise; a
copy whose episode is counted is neither searched nor stepped again."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from scalezero.config import Config
from scalezero.model import WorldModel
from scalezero.tasks import EnvBatch, SuiteLayout, Task
from scalezero.training.acting import ContextHistory, search_actions, uniform_legal_actions

NO_LIMIT_CAP = 100_000
"""Evaluation cap for a task with no episode limit of its own when ``train.eval_max_steps`` is 0,
so that a policy that never ends an episode cannot stall a run."""


def eval_episode_cap(task: Task, eval_max_steps: int) -> int:
    """Steps after which an evaluation episode is cut: ``eval_max_steps`` when set, else the
    task's own limit (or :data:`NO_LIMIT_CAP` for a task without one)."""
    return eval_max_steps or task.spec.max_episode_steps or NO_LIMIT_CAP


def random_policy_returns(task: Task, episodes: int, cap: int, seed: int = 0, step_timeout_s: float = 0.0) -> np.ndarray:
    """Returns of ``episodes`` episodes of a uniformly random legal policy, each cut at ``cap``
    steps like an evaluation episode: the reference a capped evaluation compares with
    (continuous tasks: actions uniform in [-1, 1] per dimension)."""
    batch = EnvBatch(task, episodes, seed=seed, max_episode_steps=cap, step_timeout_s=step_timeout_s)
    returns = np.full(episodes, np.nan)
    rng = np.random.default_rng(seed)
    spec = task.spec
    while np.isnan(returns).any():
        if spec.continuous:
            actions = rng.uniform(-1.0, 1.0, (episodes, spec.action_dim))
        else:
            actions = uniform_legal_actions(batch.legal, rng)
        step = batch.step(actions)
        first = step.done & np.isnan(returns)
        returns[first] = step.episode_return[first]
    batch.close()
    return returns


def evaluate(
    model: WorldModel,
    tasks: list[Task],
    layout: SuiteLayout,
    config: Config,
    device: torch.device,
    task_ids: list[int] | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    on_episode: Callable[[int, int], None] | None = None,
) -> dict[int, dict[str, float]]:
    """Play ``episodes`` greedy episodes per task (all tasks and copies batched together).

    Returns task id -> ``{"return_mean", "return_std", "length_mean", "episodes"}``, plus
    ``"success_rate"`` for tasks with a success metric.
    Episodes run to the task's own end, or are cut at ``train.eval_max_steps`` when that is
    set (counted as they stand).
    ``on_episode(finished, total)`` is called as episodes finish (e.g. to drive a progress bar).
    """
    train = config.train
    task_ids = list(range(len(tasks))) if task_ids is None else task_ids
    episodes = episodes or train.eval_episodes
    seed = (train.seed + 1) * 1_000_003 if seed is None else seed
    envs = {
        t: EnvBatch(
            tasks[t], episodes, seed=seed + 1_000 * t, max_episode_steps=eval_episode_cap(tasks[t], train.eval_max_steps), step_timeout_s=train.env_step_timeout_s, evaluation=True
        )
        for t in task_ids
    }
    histories = {t: ContextHistory(layout.pad_obs(t, b.obs), train.context_steps, layout.action_dim) for t, b in envs.items()}
    returns = {t: np.full(episodes, np.nan) for t in task_ids}
    lengths = {t: np.zeros(episodes) for t in task_ids}
    successes = {t: np.full(episodes, np.nan) for t in task_ids}
    rng = np.random.default_rng(seed)
    while True:
        # Only copies whose episode is still uncounted are searched and stepped.
        pending = {t: rows for t in task_ids if (rows := np.isnan(returns[t])).any()}
        if not pending:
            break
        live = {t: histories[t].rows(rows) for t, rows in pending.items()}
        legal = {t: envs[t].legal[rows] for t, rows in pending.items()}
        result = search_actions(model, layout, live, config.search, train.discount, rng, explore=False, device=device, legal=legal)
        for t, rows in pending.items():
            out = result.outputs[t]
            env_actions = np.zeros((episodes,) + out.env_actions.shape[1:], dtype=out.env_actions.dtype)
            actions = np.zeros((episodes,) + out.actions.shape[1:], dtype=out.actions.dtype)
            env_actions[rows], actions[rows] = out.env_actions, out.actions
            step = envs[t].step(env_actions, active=rows)
            finished = step.done & rows
            returns[t][finished] = step.episode_return[finished]
            lengths[t][finished] = step.episode_length[finished]
            successes[t][finished] = step.episode_success[finished]
            if on_episode is not None and finished.any():
                on_episode(sum(int((~np.isnan(r)).sum()) for r in returns.values()), episodes * len(task_ids))
            histories[t].advance(actions, layout.pad_obs(t, step.obs), step.done)
    for b in envs.values():
        b.close()
    results = {}
    for t in task_ids:
        results[t] = {
            "return_mean": float(returns[t].mean()),
            "return_std": float(returns[t].std()),
            "length_mean": float(lengths[t].mean()),
            "episodes": float(episodes),
        }
        if tasks[t].spec.success_metric:
            results[t]["success_rate"] = float(np.nanmean(successes[t])) if not np.isnan(successes[t]).all() else 0.0
    return results
