"""Self-play collection: every unsolved task's env copies act by search and fill their replay."""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import torch

from scalezero.config import EPSILON_MAX_REPEAT, Config
from scalezero.model import WorldModel
from scalezero.replay import TaskReplay
from scalezero.tasks import EnvBatch, SuiteLayout, Task
from scalezero.tasks.vector import EnvReplayMismatch
from scalezero.training.acting import ContextHistory, search_actions, uniform_legal_actions
from scalezero.training.checkpoint import prefixed
from scalezero.training.novelty import NoveltyCounter


class Collector:
    """Steps ``num_envs`` copies per task, one batched search per step for all of them."""

    def __init__(
        self,
        tasks: list[Task],
        layout: SuiteLayout,
        config: Config,
        device: torch.device,
        task_ids: list[int] | None = None,
    ) -> None:
        """``task_ids`` limits the collector to some of the suite's tasks (a distributed rank's share)."""
        own = set(range(len(tasks)) if task_ids is None else task_ids)
        self.layout = layout
        self.config = config
        self.device = device
        train = config.train
        base = train.seed * 10_000
        self.envs = {
            i: EnvBatch(t, train.num_envs, seed=base + 1_000 * i, step_timeout_s=train.env_step_timeout_s)
            for i, t in enumerate(tasks)
            if i in own
        }
        self.histories = {i: ContextHistory(layout.pad_obs(i, b.obs), train.context_steps, layout.action_dim) for i, b in self.envs.items()}
        self.replays = {
            i: TaskReplay(
                obs_shape=t.spec.obs_shape,
                obs_dtype=self.envs[i].obs.dtype,
                num_actions=config.search.num_samples if layout.continuous else layout.num_actions,
                num_streams=train.num_envs,
                capacity=config.replay.capacity_per_task,
                action_dim=layout.action_dim,
                keep_legal=not layout.continuous,
                prioritized=config.replay.priority_alpha > 0,
            )
            for i, t in enumerate(tasks)
            if i in own
        }
        self.env_steps = defaultdict(int)  # per task id
        self.rng = np.random.default_rng(train.seed + 17)
        # Temporally extended epsilon-greedy: per copy, the random action held and its steps left.
        self.held = {i: RandomRun(np.zeros(train.num_envs, np.int64), np.zeros(train.num_envs, np.int64)) for i in self.envs}
        # Count-based exploration: per task, how often each observation was arrived in.
        self.novelty = {i: NoveltyCounter(train.novelty_bonus, train.novelty_centered) for i in self.envs} if train.novelty_bonus > 0 else {}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything of the acting side a checkpoint needs besides replay: per task its env
        copies (:meth:`EnvBatch.state_dict`) and context histories, keyed ``env<t>.<name>``
        and ``history<t>.<name>``."""
        arrays = {}
        for t, batch in self.envs.items():
            arrays.update({f"env{t}.{k}": v for k, v in batch.state_dict().items()})
            h = self.histories[t]
            arrays.update({f"history{t}.obs": h.obs, f"history{t}.actions": h.actions, f"history{t}.valid": h.valid})
            arrays.update({f"explore{t}.action": self.held[t].action, f"explore{t}.left": self.held[t].left})
            if t in self.novelty:
                arrays.update({f"novelty{t}.{k}": v for k, v in self.novelty[t].state_arrays().items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> list[int]:
        """Restore :meth:`state_arrays`; returns the tasks whose envs could not be rebuilt
        exactly (saved without env state, or an env that does not follow its seed): those
        keep fresh copies, seeded apart from the saved ones, and a fresh context."""
        inexact = []
        for t in self.envs:
            if f"explore{t}.left" in arrays:  # absent in checkpoints from before epsilon_zeta
                self.held[t] = RandomRun(arrays[f"explore{t}.action"].copy(), arrays[f"explore{t}.left"].copy())
            if t in self.novelty and f"novelty{t}.keys" in arrays:
                self.novelty[t].load_state_arrays(prefixed(arrays, f"novelty{t}."))
        for t, batch in self.envs.items():
            state = prefixed(arrays, f"env{t}.")
            try:
                if not state:
                    raise EnvReplayMismatch("the checkpoint has no env state")
                batch.load_state_dict(state)
            except EnvReplayMismatch as exc:
                warnings.warn(f"{exc}; its running episodes end at the checkpoint and new ones start", RuntimeWarning, stacklevel=2)
                inexact.append(t)
                continue
            self.histories[t] = ContextHistory.from_arrays(*(arrays[f"history{t}.{k}"].copy() for k in ("obs", "actions", "valid")))
        for t in inexact:
            batch = self.envs[t]
            batch.close()
            self.envs[t] = EnvBatch(batch.task, batch.num_envs, seed=batch.seed + 7919 * 10_000, step_timeout_s=batch.step_timeout_s)
            self.histories[t] = ContextHistory(self.layout.pad_obs(t, self.envs[t].obs), self.config.train.context_steps, self.layout.action_dim)
        return inexact

    def env_crashes(self) -> dict[int, int]:
        """Env copies restarted after raising or hanging, per task id."""
        return {t: b.crashes for t, b in self.envs.items()}

    def step(self, model: WorldModel, task_ids: list[int], progress: float = 0.0) -> dict[str, list]:
        """One acting step for every copy of ``task_ids`` after ``progress`` (0 to 1) of the
        budget (it sets the collection temperature); returns finished-episode and search stats."""
        histories = {t: self.histories[t] for t in task_ids}
        legal = {t: self.envs[t].legal for t in task_ids}
        search = self.config.search
        search = replace(search, collect_temperature=search.temperature_at(progress))
        result = search_actions(model, self.layout, histories, search, self.config.train.discount, self.rng, explore=True, device=self.device, legal=legal)
        epsilon, zeta = search.epsilon_at(progress), search.epsilon_zeta
        stats: dict[str, list] = {"episodes": [], "search": [], "novelty": []}
        for tid in task_ids:
            out = result.outputs[tid]
            held = self.held[tid]
            if out.candidates is None and (epsilon > 0 or held.left.any()):
                chosen = _epsilon_actions(out.actions, out.legal, epsilon, self.rng, held, zeta)
                out = replace(out, actions=chosen, env_actions=chosen)
            batch = self.envs[tid]
            obs_before = batch.obs
            step = batch.step(out.env_actions)
            replay = self.replays[tid]
            search = out.search
            reward = step.reward
            if tid in self.novelty:  # the observation each copy arrived in (an ended episode's last)
                arrived = np.where(step.done.reshape((-1,) + (1,) * (step.obs.ndim - 1)), step.final_obs, step.obs)
                reward = reward + self.novelty[tid].bonus(arrived)
                stats["novelty"].append((tid, len(self.novelty[tid])))
            replay.add_steps(obs_before, out.actions, reward, search.policy_target, search.root_value, out.legal, out.candidates)
            done = np.nonzero(step.done)[0]
            held.left[done] = 0  # a random run ends with its episode
            replay.add_finals(done, step.final_obs[done], step.terminated[done])
            self.histories[tid].advance(out.actions, self.layout.pad_obs(tid, step.obs), step.done)
            self.env_steps[tid] += batch.num_envs
            for i in done:
                stats["episodes"].append((tid, float(step.episode_return[i]), int(step.episode_length[i])))
            stats["search"].append((tid, float(search.root_value.mean()), _entropy(search.policy_target)))
        return stats


@dataclass
class RandomRun:
    """Per env copy: the random action being repeated and how many more steps it lasts."""

    action: np.ndarray
    left: np.ndarray


def _epsilon_actions(
    actions: np.ndarray, legal: np.ndarray, epsilon: float, rng: np.random.Generator, held: RandomRun | None = None, zeta: float = 0.0
) -> np.ndarray:
    """``actions`` with each row replaced, with probability ``epsilon``, by a uniformly drawn
    action of ``legal [n, A]`` (epsilon-greedy collection). With ``held`` and ``zeta > 1``, a
    drawn action is also kept in ``held`` for ``n - 1`` more steps, ``n ~ zeta(zeta)`` capped at
    :data:`EPSILON_MAX_REPEAT`; rows still in such a run play it while it is legal."""
    n = actions.shape[0]
    out = actions.copy()
    going = np.zeros(n, bool)
    if held is not None:
        going = (held.left > 0) & legal[np.arange(n), held.action]
        out[going] = held.action[going]
        held.left[going] -= 1
        held.left[~going] = 0
    start = ~going & (rng.random(n) < epsilon)
    out[start] = uniform_legal_actions(legal[start], rng)
    if held is not None and zeta > 1:
        held.action[start] = out[start]
        held.left[start] = np.minimum(rng.zipf(zeta, size=int(start.sum())), EPSILON_MAX_REPEAT) - 1
    return out


def _entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(axis=-1).mean())
