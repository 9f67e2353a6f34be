"""Task abstraction: what the rest of the code may know about an environment.

A :class:`TaskSpec` is everything the model, search and loop are allowed to know about a
task; nothing else in the code branches on a task's name. :class:`SuiteLayout` is derived
from the specs of a suite: the maximal action set with a mask per task, and one padded
observation shape per observation kind (tasks of the same kind share an encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

OBS_KINDS = ("vector", "image")


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    ``obs_shape`` is ``(D,)`` for vectors and ``(C, H, W)`` for images (channels first).
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

    def __post_init__(self) -> None:
        if self.obs_kind not in OBS_KINDS:
            raise ValueError(f"TaskSpec({self.name}).obs_kind = {self.obs_kind!r}; expected one of {OBS_KINDS}")
        expected = 1 if self.obs_kind == "vector" else 3
        if len(self.obs_shape) != expected:
            raise ValueError(f"TaskSpec({self.name}).obs_shape = {self.obs_shape}; a {self.obs_kind} needs {expected} dims")
        if self.num_actions < 1:
            raise ValueError(f"TaskSpec({self.name}).num_actions must be >= 1, got {self.num_actions}")


@dataclass(frozen=True)
class SuiteLayout:
    """How a suite's tasks share one model.

    Attributes:
        specs: the suite's task specs, in task-id order.
        num_actions: size of the maximal action set (max over tasks).
        action_masks: ``[T, A]`` bool, True where the action exists for the task.
        obs_shapes: padded observation shape per observation kind present in the suite.
    """

    specs: tuple[TaskSpec, ...]
    num_actions: int
    action_masks: np.ndarray
    obs_shapes: dict[str, tuple[int, ...]]

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
    num_actions = max(s.num_actions for s in specs)
    masks = np.zeros((len(specs), num_actions), dtype=bool)
    for i, s in enumerate(specs):
        masks[i, : s.num_actions] = True
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
    return SuiteLayout(specs=specs, num_actions=num_actions, action_masks=masks, obs_shapes=shapes)


@dataclass
class Task:
    """A registered task: its spec and a factory of fresh environment copies.

    ``make_env(seed)`` returns a Gymnasium-style env whose observations already match
    ``spec.obs_shape`` (float32 or uint8) and whose actions are ``0..num_actions-1``.
    """

    spec: TaskSpec
    make_env: Callable[[int], Any]
