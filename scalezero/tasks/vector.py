"""Vectorised stepping of several copies of one task's environment, with auto-reset.

Stepping is synchronous in one process: MinAtar and classic control step in
microseconds, far below the cost of one search, so worker processes would only add
latency. When an episode ends, its final observation is returned in ``final_obs``
(needed as the last latent-consistency target) and the copy is reset at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalezero.tasks.base import Task


@dataclass
class StepResult:
    """Outcome of one step of every copy. Arrays have a leading ``[num_envs]`` axis.

    ``obs`` is the observation to act on next (already the reset observation for copies
    whose episode ended); ``final_obs`` holds the last observation of ended episodes
    (undefined elsewhere); ``episode_return``/``episode_length`` are set where ``done``,
    and ``episode_success`` too (1.0/0.0) for tasks with a success metric (NaN otherwise).
    ``legal`` is ``[num_envs, num_actions]``: the actions legal at ``obs``.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    episode_success: np.ndarray | None = None
    legal: np.ndarray | None = None

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class ObservationShapeError(ValueError):
    """A task's env returned an observation that does not match its spec (a bug in the task)."""


class EnvReplayMismatch(RuntimeError):
    """An env copy rebuilt from its seed and actions did not reach its saved state."""


class EnvTimeout(RuntimeError):
    """An env copy's ``step``/``reset`` ran past ``step_timeout_s``."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`EnvTimeout` in this (main) thread after ``seconds`` (0: no limit). Uses
    SIGALRM, so it interrupts Python code; elsewhere than the main thread it does nothing."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise EnvTimeout(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class EnvBatch:
    """``num_envs`` copies of one task, seeded ``seed, seed+1, ...``.

    A copy whose ``step`` raises or runs past ``step_timeout_s`` is replaced by a fresh one; its
    episode ends there as truncated (final observation: the last one it returned) and the
    restart is counted in ``crashes``, so one broken copy never stops training. Observations
    of the wrong shape are a bug in the task and stop with a message naming it.
    ``evaluation`` builds the copies with the task's ``make_eval_env`` where it has one.

    Attributes:
        obs: ``[num_envs, *obs_shape]`` the observations to act on next.
        legal: ``[num_envs, num_actions]`` bool, the actions legal at ``obs`` (the spec's
            static set, or the env's ``legal_actions()`` where it has one).
    """

    def __init__(
        self,
        task: Task,
        num_envs: int,
        seed: int,
        max_episode_steps: int | None = None,
        step_timeout_s: float = 0.0,
        evaluation: bool = False,
    ) -> None:
        self.task = task
        self.num_envs = num_envs
        self.seed = seed
        self.step_timeout_s = step_timeout_s
        self.crashes = 0
        self.factory = (task.make_eval_env if evaluation else None) or task.make_env
        self.envs = [self.factory(seed + i) for i in range(num_envs)]
        # Each copy's seed and every action it took since it was built: enough to rebuild it
        # exactly (state_dict / load_state_dict) where the env is deterministic given its seed.
        self._seeds = [seed + i for i in range(num_envs)]
        self._actions: list[list] = [[] for _ in range(num_envs)]
        limit = task.spec.max_episode_steps
        self.max_episode_steps = min(x for x in (limit, max_episode_steps) if x) if (limit or max_episode_steps) else None
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._success = np.zeros(num_envs, dtype=bool)
        spec = task.spec
        self._static_legal = np.zeros(spec.num_actions, dtype=bool)
        self._static_legal[list(spec.legal_actions) if spec.legal_actions is not None else slice(None)] = True
        self.obs = np.stack([self._checked(env.reset(), "reset") for env in self.envs])
        self.legal = np.stack([self._legal_of(i) for i in range(num_envs)])

    def _legal_of(self, i: int) -> np.ndarray:
        """The actions copy ``i`` allows now: its ``legal_actions()`` within the spec's set."""
        get = getattr(self.envs[i], "legal_actions", None)
        if get is None:
            return self._static_legal
        legal = np.asarray(get(), dtype=bool)
        if legal.shape != self._static_legal.shape:
            raise ValueError(f"task {self.task.spec.name!r}: legal_actions() returned shape {legal.shape}, expected {self._static_legal.shape}")
        legal = legal & self._static_legal
        # An env that allows nothing would leave the search without a choice: fall back to the static set.
        return legal if legal.any() else self._static_legal

    def _checked(self, obs: Any, where: str) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != tuple(self.task.spec.obs_shape):
            raise ObservationShapeError(
                f"task {self.task.spec.name!r}: {where}() returned an observation of shape {obs.shape}, "
                f"but its spec says {tuple(self.task.spec.obs_shape)}"
            )
        return obs

    def _restart(self, i: int, error: BaseException) -> np.ndarray:
        """Replace copy ``i`` after ``error``; returns its first observation."""
        self.crashes += 1
        warnings.warn(f"task {self.task.spec.name!r}: env copy {i} failed ({type(error).__name__}: {error}); restarted it", RuntimeWarning, stacklevel=3)
        try:
            self.envs[i].close()
        except Exception:  # noqa: BLE001, S110 -- a broken env may fail to close as well; it is dropped either way
            pass
        self._seeds[i] = self.seed + i + 7919 * self.crashes
        self._actions[i] = []
        self.envs[i] = self.factory(self._seeds[i])
        with _time_limit(self.step_timeout_s):
            return self._checked(self.envs[i].reset(), "reset")

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        spec = self.task.spec
        actions = np.asarray(actions)
        if spec.continuous:
            if actions.shape != (self.num_envs, spec.action_dim) or not np.isfinite(actions).all():
                raise ValueError(f"{spec.name}: actions must be [{self.num_envs}, {spec.action_dim}] finite floats, got shape {actions.shape}")
            return np.clip(actions, -1.0, 1.0).astype(np.float32)
        n = spec.num_actions
        if actions.shape != (self.num_envs,) or (actions < 0).any() or (actions >= n).any():
            raise ValueError(f"{spec.name}: actions must be {self.num_envs} integers in [0, {n}), got {actions!r}")
        return actions

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Step every copy with ``actions``: ``[num_envs]`` task-local action ids, or
        ``[num_envs, action_dim]`` floats in [-1, 1] for a continuous task (clipped there).
        ``active`` (``[num_envs]`` bool) steps only those copies: the others keep their
        observation and episode, with reward 0 and not done (evaluation stops stepping copies
        whose episode it has counted)."""
        actions = self._check_actions(actions)
        continuous = self.task.spec.continuous
        has_success = self.task.spec.success_metric
        obs = np.empty_like(self.obs)
        final_obs = np.empty_like(self.obs)
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        ep_return = np.zeros(self.num_envs, dtype=np.float64)
        ep_length = np.zeros(self.num_envs, dtype=np.int64)
        ep_success = np.full(self.num_envs, np.nan)
        legal = self.legal.copy()
        for i, env in enumerate(self.envs):
            if active is not None and not active[i]:
                obs[i] = self.obs[i]
                continue
            error: BaseException | None = None
            action = actions[i].copy() if continuous else int(actions[i])
            self._actions[i].append(action)
            try:
                with _time_limit(self.step_timeout_s):
                    o, r, term, trunc = env.step(action)
                    if has_success:
                        self._success[i] |= bool(env.is_success())
                o = self._checked(o, "step")
            except ObservationShapeError:
                raise
            except Exception as exc:  # noqa: BLE001 -- any failure inside the user's env: restart this copy
                error = exc
            crashed = error is not None
            if crashed:
                o, r, term, trunc = self.obs[i], 0.0, False, True
            self._returns[i] += r
            self._lengths[i] += 1
            if self.max_episode_steps is not None and self._lengths[i] >= self.max_episode_steps and not term:
                trunc = True
            reward[i], terminated[i], truncated[i] = r, term, trunc
            if term or trunc:
                final_obs[i] = o
                ep_return[i], ep_length[i] = self._returns[i], self._lengths[i]
                if has_success:
                    ep_success[i] = float(self._success[i])
                self._returns[i], self._lengths[i], self._success[i] = 0.0, 0, False
                o = self._restart(i, error) if error is not None else self._reset(i)
            obs[i] = o
            legal[i] = self._legal_of(i)
        self.obs = obs
        self.legal = legal
        return StepResult(obs, reward, terminated, truncated, final_obs, ep_return, ep_length, ep_success, legal)

    def state_dict(self) -> dict[str, np.ndarray]:
        """What rebuilds every copy exactly (:meth:`load_state_dict`): its seed and the actions
        it took since it was built, the running episodes' counters and the current observations."""
        logs = [np.asarray(a, dtype=np.float32 if self.task.spec.continuous else np.int64) for a in self._actions]
        width = (self.task.spec.action_dim,) if self.task.spec.continuous else ()
        return {
            "seeds": np.asarray(self._seeds, dtype=np.int64),
            "action_counts": np.asarray([len(a) for a in logs], dtype=np.int64),
            "actions": np.concatenate([a.reshape((-1,) + width) for a in logs]),
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "success": self._success.copy(),
            "obs": self.obs.copy(),
            "crashes": np.asarray([self.crashes], dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Rebuild every copy as :meth:`state_dict` saw it: built from its seed again and stepped
        through its recorded actions (episode ends and resets included). An env that does not
        follow its seed ends in another state: :class:`EnvReplayMismatch` names the task, and
        the copies are left as they were."""
        counts = state["action_counts"]
        if counts.shape != (self.num_envs,):
            raise ValueError(f"task {self.task.spec.name!r}: the saved state has {counts.shape[0]} env copies, this batch {self.num_envs}")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        rebuilt = []
        try:
            for i in range(self.num_envs):
                env = self.factory(int(state["seeds"][i]))
                rebuilt.append(env)
                obs = self._replay(env, state["actions"][bounds[i] : bounds[i + 1]])
                if not np.array_equal(obs, state["obs"][i]):
                    raise EnvReplayMismatch(
                        f"task {self.task.spec.name!r}: env copy {i} rebuilt from its seed and {int(counts[i])} actions "
                        "does not reach the saved observation (the env does not follow its seed)"
                    )
        except BaseException:
            for env in rebuilt:
                env.close()
            raise
        for env in self.envs:
            env.close()
        self.envs = rebuilt
        self._seeds = [int(x) for x in state["seeds"]]
        self._actions = [
            [a.copy() if self.task.spec.continuous else int(a) for a in state["actions"][bounds[i] : bounds[i + 1]]] for i in range(self.num_envs)
        ]
        self._returns[...] = state["returns"]
        self._lengths[...] = state["lengths"]
        self._success[...] = state["success"]
        self.crashes = int(state["crashes"][0])
        self.obs = np.stack([self._checked(o, "reset") for o in state["obs"]])
        self.legal = np.stack([self._legal_of(i) for i in range(self.num_envs)])

    def _replay(self, env: Any, actions: np.ndarray) -> np.ndarray:
        """Reset ``env`` and step it through ``actions`` the way :meth:`step` does (resetting
        where an episode ends or reaches the cap); returns the observation it ends on."""
        obs = self._checked(env.reset(), "reset")
        length = 0
        continuous = self.task.spec.continuous
        for action in actions:
            obs, _, term, trunc = env.step(action.copy() if continuous else int(action))
            if self.task.spec.success_metric:
                env.is_success()
            length += 1
            if term or trunc or (self.max_episode_steps is not None and length >= self.max_episode_steps):
                obs, length = env.reset(), 0
            obs = self._checked(obs, "step")
        return obs

    def _reset(self, i: int) -> np.ndarray:
        try:
            with _time_limit(self.step_timeout_s):
                return self._checked(self.envs[i].reset(), "reset")
        except ObservationShapeError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure inside the user's env: restart this copy
            return self._restart(i, exc)

    def close(self) -> None:
        for env in self.envs:
            env.close()
