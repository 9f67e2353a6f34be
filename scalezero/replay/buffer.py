"""Per-task replay: one ring of consecutive steps per collector env copy ("stream").

Each collector copy writes its own stream, so the steps of an episode are always
contiguous and a K-step window never mixes copies. An episode is stored as its steps
``(obs_t, action_t, reward_t, search policy_t, root value_t)`` (plus, in a discrete suite,
the actions legal at ``obs_t``; in a continuous one, the candidate actions the search
chose among, over which ``policy_t`` is a distribution) followed by one *final*
entry holding the last observation (the latent-consistency target of the last action;
its value target is 0 when the episode terminated). Sampling is uniform over stored
steps; a window is returned as arrays plus validity masks, and targets are computed from
them by :mod:`scalezero.replay.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Entry kinds.
STEP, FINAL_TERMINATED, FINAL_TRUNCATED = 0, 1, 2
EMPTY = -1
#: Arrays only some buffers keep.
OPTIONAL = ("legal", "candidates", "priorities")


@dataclass
class Window:
    """A batch of windows of ``L`` consecutive entries starting at sampled steps.

    Shapes: ``obs [B, L, *obs_shape]``, ``actions [B, L(, action_dim)]``,
    ``rewards/root_values [B, L]``, ``policies [B, L, A]`` (``[B, L, K]`` over the candidates
    in a continuous suite); masks ``[B, L]``: ``is_step`` (a real step: action, reward and
    policy exist), ``is_obs`` (an observation of the same episode exists: a step or a
    final entry), ``terminal`` (the final entry of an episode that terminated).
    ``legal [B, L, A]`` (discrete) and ``candidates [B, L, K, action_dim]`` (continuous) are
    None where the buffer does not keep them. Outside ``is_obs`` the arrays hold zeros
    (``legal`` holds True outside ``is_step``).

    With ``context = C > 0`` (reanalyse), ``context_obs [B, C, *obs_shape]``,
    ``context_actions [B, C(, action_dim)]`` and ``context_valid [B, C]`` hold the ``C`` steps
    of the same episode just before each window (oldest first; invalid, and zero, before
    the episode's start or where the ring has overwritten them); None otherwise.

    ``streams, start_abs [B]`` say where each window starts (stream, and index among the
    entries ever written to it), which :meth:`TaskReplay.update_priorities` needs;
    ``weights [B]`` are the importance weights of a prioritized draw (largest 1), None for a
    uniform one. ``ages [B]``: about how many of the task's env steps were collected since
    each window's start (entries written to its stream since, final entries included, times
    the number of streams, which fill at the same pace).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    policies: np.ndarray
    root_values: np.ndarray
    is_step: np.ndarray
    is_obs: np.ndarray
    terminal: np.ndarray
    legal: np.ndarray | None = None
    candidates: np.ndarray | None = None
    context_obs: np.ndarray | None = None
    context_actions: np.ndarray | None = None
    context_valid: np.ndarray | None = None
    streams: np.ndarray | None = None
    start_abs: np.ndarray | None = None
    weights: np.ndarray | None = None
    ages: np.ndarray | None = None


class TaskReplay:
    """Replay of one task: ``num_streams`` rings of ``capacity // num_streams`` entries.

    ``num_actions`` is the width of a policy target (the suite's action count, or the number
    of candidates in a continuous suite). ``action_dim > 0`` stores action vectors and the
    candidates ``[num_actions, action_dim]`` of every step; ``keep_legal`` stores the
    per-step legal-action masks of a discrete suite. ``prioritized`` keeps a priority per
    entry for :meth:`sample`'s ``alpha > 0``.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        num_actions: int,
        num_streams: int,
        capacity: int,
        action_dim: int = 0,
        keep_legal: bool = False,
        prioritized: bool = False,
    ) -> None:
        self.num_streams = num_streams
        self.stream_capacity = max(2, capacity // num_streams)
        shape = (num_streams, self.stream_capacity)
        self.obs = np.zeros(shape + tuple(obs_shape), dtype=obs_dtype)
        if action_dim:
            self.actions = np.zeros(shape + (action_dim,), dtype=np.float32)
        else:
            self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.policies = np.zeros(shape + (num_actions,), dtype=np.float32)
        self.legal = np.ones(shape + (num_actions,), dtype=bool) if keep_legal else None
        self.candidates = np.zeros(shape + (num_actions, action_dim), dtype=np.float32) if action_dim else None
        self.root_values = np.zeros(shape, dtype=np.float32)
        self.priorities = np.zeros(shape, dtype=np.float32) if prioritized else None
        self.kinds = np.full(shape, EMPTY, dtype=np.int8)
        self.episode = np.full(shape, -1, dtype=np.int64)
        self.written = np.zeros(num_streams, dtype=np.int64)  # entries ever written per stream
        self._episode_of_stream = np.arange(num_streams, dtype=np.int64)
        self._next_episode = num_streams
        self.steps_added = 0

    def __len__(self) -> int:
        """Number of steps (not final entries) currently stored."""
        return int((self.kinds == STEP).sum())

    def _write(self, streams: np.ndarray) -> np.ndarray:
        slots = self.written[streams] % self.stream_capacity
        self.written[streams] += 1
        return slots

    def add_steps(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        policies: np.ndarray,
        root_values: np.ndarray,
        legal: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> None:
        """Append one step to every stream (arrays have a leading ``[num_streams]`` axis).
        ``legal`` (a buffer that keeps masks; default: all legal) and ``candidates`` (a
        continuous buffer: required) follow the shapes of :class:`Window` without ``L``."""
        streams = np.arange(self.num_streams)
        slots = self._write(streams)
        self.obs[streams, slots] = obs
        self.actions[streams, slots] = actions
        self.rewards[streams, slots] = rewards
        self.policies[streams, slots] = policies
        self.root_values[streams, slots] = root_values
        if self.legal is not None:
            self.legal[streams, slots] = True if legal is None else legal
        if self.candidates is not None:
            if candidates is None:
                raise ValueError("a continuous replay needs the candidate actions of every step")
            self.candidates[streams, slots] = candidates
        if self.priorities is not None:
            self.priorities[streams, slots] = self.max_priority()
        self.kinds[streams, slots] = STEP
        self.episode[streams, slots] = self._episode_of_stream[streams]
        self.steps_added += self.num_streams

    def add_finals(self, streams: np.ndarray, final_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Close the episodes of ``streams`` with their last observation ``final_obs [n, ...]``."""
        streams = np.asarray(streams, dtype=np.int64)
        if streams.size == 0:
            return
        slots = self._write(streams)
        self.obs[streams, slots] = final_obs
        self.actions[streams, slots] = 0
        self.rewards[streams, slots] = 0.0
        self.policies[streams, slots] = 0.0
        self.root_values[streams, slots] = 0.0
        if self.legal is not None:
            self.legal[streams, slots] = True
        if self.candidates is not None:
            self.candidates[streams, slots] = 0.0
        if self.priorities is not None:
            self.priorities[streams, slots] = 0.0
        self.kinds[streams, slots] = np.where(terminated, FINAL_TERMINATED, FINAL_TRUNCATED)
        self.episode[streams, slots] = self._episode_of_stream[streams]
        self._episode_of_stream[streams] = self._next_episode + np.arange(streams.size)
        self._next_episode += streams.size

    def close_open_episodes(self, last_obs: np.ndarray) -> None:
        """End every stream's running episode (one with at least one step) as truncated at
        ``last_obs [num_streams, ...]``, the observation its env copy was about to act on."""
        streams = np.arange(self.num_streams)
        has_any = self.written > 0
        last = (self.written - 1) % self.stream_capacity
        open_ = has_any & (self.kinds[streams, last] == STEP)
        idx = np.nonzero(open_)[0]
        self.add_finals(idx, last_obs[idx], np.zeros(idx.size, dtype=bool))

    def sample(
        self, batch_size: int, length: int, rng: np.random.Generator, context: int = 0, alpha: float = 0.0, beta: float = 0.0
    ) -> Window:
        """Sample ``batch_size`` windows of ``length`` entries, each starting at a stored step,
        with the ``context`` steps before each start (see :class:`Window`). ``alpha > 0``
        (a prioritized buffer) draws starts with probability ``P_i ~ priority_i ** alpha`` and
        weights them by ``(N P_i) ** -beta``, divided by the batch's largest weight."""
        stream_idx, slot_idx = np.nonzero(self.kinds == STEP)
        if stream_idx.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        weights = None
        if alpha > 0:
            if self.priorities is None:
                raise ValueError("prioritized sampling (alpha > 0) needs a buffer made with prioritized=True")
            scaled = self.priorities[stream_idx, slot_idx].astype(np.float64) ** alpha
            cumulative = np.cumsum(scaled)
            pick = np.searchsorted(cumulative, rng.random(batch_size) * cumulative[-1], side="right")
            pick = np.minimum(pick, stream_idx.size - 1)
            weights = (stream_idx.size * scaled[pick] / cumulative[-1]) ** -beta
            weights = (weights / weights.max()).astype(np.float32)
        else:
            pick = rng.integers(0, stream_idx.size, size=batch_size)
        streams, slots = stream_idx[pick], slot_idx[pick]
        # Absolute (ever-written) index of each start, so windows stop at the write head.
        head_slot = self.written[streams] % self.stream_capacity
        start_abs = self.written[streams] - ((head_slot - slots) % self.stream_capacity)
        start_abs = np.where(start_abs == self.written[streams], start_abs - self.stream_capacity, start_abs)
        offsets = np.arange(length)
        abs_idx = start_abs[:, None] + offsets[None, :]
        cols = abs_idx % self.stream_capacity
        rows = np.broadcast_to(streams[:, None], cols.shape)
        written = abs_idx < self.written[streams][:, None]
        same_episode = self.episode[rows, cols] == self.episode[streams, slots][:, None]
        kinds = self.kinds[rows, cols]
        is_obs = written & same_episode & (kinds != EMPTY)
        # An episode's entries are contiguous: once invalid, stay invalid.
        is_obs = np.cumprod(is_obs, axis=1).astype(bool)
        is_step = is_obs & (kinds == STEP)
        terminal = is_obs & (kinds == FINAL_TERMINATED)
        obs = self.obs[rows, cols]
        obs[~is_obs] = 0
        mask2 = is_obs.astype(np.float32)
        actions = self.actions[rows, cols]
        actions = actions * is_step.reshape(is_step.shape + (1,) * (actions.ndim - 2)).astype(actions.dtype)
        legal = candidates = None
        if self.legal is not None:
            legal = self.legal[rows, cols] | ~is_step[..., None]
        if self.candidates is not None:
            candidates = self.candidates[rows, cols] * is_step[..., None, None]
        ctx = self._context(streams, slots, start_abs, context) if context > 0 else {}
        return Window(
            **ctx,
            obs=obs,
            actions=actions,
            rewards=self.rewards[rows, cols] * is_step,
            policies=self.policies[rows, cols] * is_step[..., None],
            root_values=self.root_values[rows, cols] * mask2,
            is_step=is_step,
            is_obs=is_obs,
            terminal=terminal,
            legal=legal,
            candidates=candidates,
            streams=streams,
            start_abs=start_abs,
            weights=weights,
            ages=(self.written[streams] - start_abs) * self.num_streams,
        )

    def max_priority(self) -> float:
        """The priority a new step gets: the largest stored (1 in a buffer without any), so
        every new step is drawn soon."""
        largest = float(self.priorities.max()) if self.priorities is not None else 0.0
        return largest if largest > 0 else 1.0

    def update_priorities(self, window: Window, priorities: np.ndarray, mask: np.ndarray) -> None:
        """Set the priorities ``[B]`` of the steps ``window``'s windows start at, where ``mask [B]``
        holds and the step is still stored (the ring may have moved on since the draw).
        Priorities must be finite and > 0 (a step of priority 0 could never be drawn again)."""
        if self.priorities is None:
            raise ValueError("this replay buffer keeps no priorities (made without prioritized=True)")
        priorities = np.asarray(priorities, dtype=np.float32)
        if not (np.isfinite(priorities[mask]).all() and (priorities[mask] > 0).all()):
            raise ValueError("priorities must be finite and > 0")
        stored = window.start_abs >= self.written[window.streams] - self.stream_capacity
        keep = mask & stored
        cols = window.start_abs[keep] % self.stream_capacity
        self.priorities[window.streams[keep], cols] = priorities[keep]

    def _context(self, streams: np.ndarray, slots: np.ndarray, start_abs: np.ndarray, context: int) -> dict[str, np.ndarray]:
        """The ``context`` steps before each window start that are still stored and belong to
        the start's episode (contiguous back from the start)."""
        abs_idx = start_abs[:, None] + np.arange(-context, 0)[None, :]
        oldest = self.written[streams] - self.stream_capacity  # entries older than this were overwritten
        cols = abs_idx % self.stream_capacity
        rows = np.broadcast_to(streams[:, None], cols.shape)
        valid = (abs_idx >= 0) & (abs_idx >= oldest[:, None])
        valid &= (self.episode[rows, cols] == self.episode[streams, slots][:, None]) & (self.kinds[rows, cols] == STEP)
        valid = np.cumprod(valid[:, ::-1], axis=1)[:, ::-1].astype(bool)  # stop at the first gap back from the start
        obs = self.obs[rows, cols]
        obs[~valid] = 0
        actions = self.actions[rows, cols]
        actions = actions * valid.reshape(valid.shape + (1,) * (actions.ndim - 2)).astype(actions.dtype)
        return {"context_obs": obs, "context_actions": actions, "context_valid": valid}

    def state_dict(self) -> dict[str, np.ndarray]:
        """All arrays needed to restore the buffer exactly (for checkpoints)."""
        optional = {name: getattr(self, name) for name in OPTIONAL if getattr(self, name) is not None}
        return {
            **optional,
            "obs": self.obs,
            "actions": self.actions,
            "rewards": self.rewards,
            "policies": self.policies,
            "root_values": self.root_values,
            "kinds": self.kinds,
            "episode": self.episode,
            "written": self.written,
            "episode_of_stream": self._episode_of_stream,
            "counters": np.array([self._next_episode, self.steps_added], dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from :meth:`state_dict` (shapes must match this buffer's)."""
        names = ["obs", "actions", "rewards", "policies", "root_values", "kinds", "episode", "written"]
        names += [name for name in OPTIONAL if getattr(self, name) is not None]
        if self.priorities is not None and "priorities" not in state:  # saved by a uniform run: start level
            state = {**state, "priorities": np.where(state["kinds"] == STEP, 1.0, 0.0).astype(np.float32)}
        for name in names:
            if name not in state:
                raise ValueError(f"replay state has no {name!r} array (saved by a different kind of buffer)")
            array = getattr(self, name)
            if state[name].shape != array.shape:
                raise ValueError(f"replay state {name!r} has shape {state[name].shape}, expected {array.shape}")
            array[...] = state[name]
        self._episode_of_stream[...] = state["episode_of_stream"]
        self._next_episode, self.steps_added = (int(x) for x in state["counters"])
