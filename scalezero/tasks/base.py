"""Task abstraction: what the rest of the code may know about an environment.

A :class:`TaskSpec` is everything the model, search and loop are allowed to know about a
task; nothing else in the code branches on a task's name. :class:`SuiteLayout` is derived
from the specs of a suite: the maximal action set with a mask per task, and one padded
observation shape per observation kind (tasks of the same kind share an encoder).

The environment protocol (what ``Task.make_env(seed)`` returns):

* ``reset() -> obs`` and ``step(action) -> (obs, reward, terminated, truncated)``, ``close()``;
  observations match ``spec.obs_shape``. Discrete actions are ints ``0..num_actions-1``;
  continuous actions (``spec.action_dim > 0``) are float32 vectors in ``[-1, 1]^action_dim``.
* optional ``legal_actions() -> bool array [num_actions]``: the actions legal *now* (text games
  whose valid commands change every step); without it the spec's static set applies.
* optional ``is_success() -> bool``: whether the current episode has succeeded so far
  (Meta-World); evaluations then report a success rate beside the return.
* optional ``render() -> uint8 [H, W, 3]`` (a frame) or ``transcript() -> str`` (text), used
  by ``scalezero play``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

OBS_KINDS = ("vector", "image", "text")
"""``vector``: float ``(D,)``; ``image``: ``(C, H, W)`` channels first, values in
``[0, obs_scale]``; ``text``: ``(L,)`` int token ids, 0 = padding."""


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    ``obs_shape`` is ``(D,)`` for vectors and text, ``(C, H, W)`` for images (channels first).
    Discrete tasks have ``num_actions >= 1`` and ``action_dim == 0``; continuous tasks have
    ``num_actions == 0`` and ``action_dim >= 1``.
    """

    name: str
    obs_kind: str
    obs_shape: tuple[int, ...]
    num_actions: int
    target_return: float
    random_return: float | None = None
    """Mean return of a uniformly random policy, where known (measured, for reports)."""
    human_return: float | None = None
    """Reference human return, where a published table has one (human-normalised scores)."""
    max_episode_steps: int | None = None
    action_dim: int = 0
    """0: discrete actions; d >= 1: continuous actions in ``[-1, 1]^d`` (``num_actions`` is 0)."""
    legal_actions: tuple[int, ...] | None = None
    """The subset of ``0..num_actions-1`` the task has (e.g. an Atari game's minimal action set
    inside the full 18); None: all of them."""
    obs_scale: float = 1.0
    """Largest observation value (255 for raw pixels); encoders divide by it."""
    success_metric: bool = False
    """The env has ``is_success()``; evaluations report a success rate (Meta-World)."""

    def __post_init__(self) -> None:
        if self.obs_kind not in OBS_KINDS:
            raise ValueError(f"TaskSpec({self.name}).obs_kind = {self.obs_kind!r}; expected one of {OBS_KINDS}")
        expected = 3 if self.obs_kind == "image" else 1
        if len(self.obs_shape) != expected:
            raise ValueError(f"TaskSpec({self.name}).obs_shape = {self.obs_shape}; a {self.obs_kind} needs {expected} dims")
        if self.action_dim < 0:
            raise ValueError(f"TaskSpec({self.name}).action_dim must be >= 0, got {self.action_dim}")
        if self.action_dim == 0 and self.num_actions < 1:
            raise ValueError(f"TaskSpec({self.name}).num_actions must be >= 1 for a discrete task, got {self.num_actions}")
        if self.action_dim > 0 and self.num_actions != 0:
            raise ValueError(f"TaskSpec({self.name}) is continuous (action_dim {self.action_dim}); num_actions must be 0, got {self.num_actions}")
        if self.legal_actions is not None:
            bad = [a for a in self.legal_actions if not 0 <= a < self.num_actions]
            if bad or not self.legal_actions or len(set(self.legal_actions)) != len(self.legal_actions):
                raise ValueError(
                    f"TaskSpec({self.name}).legal_actions = {self.legal_actions}; expected distinct ids in 0..{self.num_actions - 1}"
                )
        if self.obs_scale <= 0:
            raise ValueError(f"TaskSpec({self.name}).obs_scale must be > 0, got {self.obs_scale}")

    @property
    def continuous(self) -> bool:
        return self.action_dim > 0


@dataclass(frozen=True)
class SuiteLayout:
    """How a suite's tasks share one model.

    Attributes:
        specs: the suite's task specs, in task-id order.
        num_actions: size of the maximal discrete action set (max over tasks; 0 in a
            continuous suite).
        action_masks: ``[T, A]`` bool, True where the action exists for the task.
        obs_shapes: padded observation shape per observation kind present in the suite.
        action_dim: largest continuous action dimension (0 in a discrete suite).
        action_dim_masks: ``[T, action_dim]`` bool, True where the task has that dimension.
        obs_scales: per observation kind, the largest ``obs_scale`` of its tasks.
    """

    specs: tuple[TaskSpec, ...]
    num_actions: int
    action_masks: np.ndarray
    obs_shapes: dict[str, tuple[int, ...]]
    action_dim: int = 0
    action_dim_masks: np.ndarray | None = None
    obs_scales: dict[str, float] | None = None

    @property
    def continuous(self) -> bool:
        """Continuous actions (every task of the suite; suites do not mix the two)."""
        return self.action_dim > 0

    @property
    def num_tasks(self) -> int:
        return len(self.specs)

    def kind(self, task_id: int) -> str:
        return self.specs[task_id].obs_kind

    def pad_obs(self, task_id: int, obs: np.ndarray) -> np.ndarray:
        """Zero-pad a batch of observations ``[N, *obs_shape]`` to the kind's padded shape."""
        target = self.obs_shapes[self.kind(task_id)]
        if obs.shape[1:] == target:
            return obs
        pad = [(0, 0)] + [(0, t - s) for s, t in zip(obs.shape[1:], target)]
        return np.pad(obs, pad)


def make_layout(specs: list[TaskSpec] | tuple[TaskSpec, ...]) -> SuiteLayout:
    """Derive the shared action set, masks and padded observation shapes of a suite."""
    specs = tuple(specs)
    kinds = {s.continuous for s in specs}
    if len(kinds) > 1:
        cont = [s.name for s in specs if s.continuous]
        disc = [s.name for s in specs if not s.continuous]
        raise ValueError(f"a suite cannot mix continuous tasks ({', '.join(cont)}) with discrete ones ({', '.join(disc)})")
    num_actions = max(s.num_actions for s in specs)
    masks = np.zeros((len(specs), num_actions), dtype=bool)
    for i, s in enumerate(specs):
        masks[i, list(s.legal_actions) if s.legal_actions is not None else slice(0, s.num_actions)] = True
    action_dim = max(s.action_dim for s in specs)
    dim_masks = np.zeros((len(specs), action_dim), dtype=bool)
    for i, s in enumerate(specs):
        dim_masks[i, : s.action_dim] = True
    scales: dict[str, float] = {}
    for s in specs:
        scales[s.obs_kind] = max(scales.get(s.obs_kind, 0.0), s.obs_scale)
    shapes: dict[str, tuple[int, ...]] = {}
    for s in specs:
        if s.obs_kind not in shapes:
            shapes[s.obs_kind] = s.obs_shape
        else:
            prev = shapes[s.obs_kind]
            if s.obs_kind == "image" and prev[1:] != s.obs_shape[1:]:
                raise ValueError(
                    f"image tasks in one suite must share height and width; {s.name} has {s.obs_shape[1:]}, others {prev[1:]}"
                )
            shapes[s.obs_kind] = tuple(max(a, b) for a, b in zip(prev, s.obs_shape))
    return SuiteLayout(
        specs=specs, num_actions=num_actions, action_masks=masks, obs_shapes=shapes,
        action_dim=action_dim, action_dim_masks=dim_masks, obs_scales=scales,
    )  # fmt: skip


@dataclass
class Task:
    """A registered task: its spec and a factory of fresh environment copies.

    ``make_env(seed)`` returns an env following the protocol in this module's docstring; a
    suite entry's ``kwargs`` (keys of ``options``) are passed on as keyword arguments.
    ``make_eval_env(seed)``, when given, builds the copies evaluation plays (e.g. Atari
    without the training-only end of episode at a lost life); otherwise evaluation uses
    ``make_env`` too.
    """

    spec: TaskSpec
    make_env: Callable[..., Any]
    make_eval_env: Callable[..., Any] | None = None
    options: tuple[str, ...] = ()
    """Keyword arguments ``make_env(seed, **kwargs)`` accepts from a suite entry's ``kwargs``
    (e.g. a Jericho game's ``game_dir``)."""
