"""Task registry: every environment family registers its tasks here by name.

``get_task(name)`` is the only way the rest of the code obtains a task; an unknown name
fails with the list of registered names.
"""

from __future__ import annotations

from scalezero.tasks.base import OBS_KINDS, SuiteLayout, Task, TaskSpec, make_layout
from scalezero.tasks.vector import EnvBatch, StepResult

__all__ = [
    "OBS_KINDS",
    "EnvBatch",
    "StepResult",
    "SuiteLayout",
    "Task",
    "TaskSpec",
    "available_tasks",
    "get_task",
    "make_layout",
    "register_task",
]

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Add a task to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[task.spec.name] = task


def _register_builtin() -> None:
    from scalezero.tasks.classic import classic_tasks
    from scalezero.tasks.minatar import minatar_tasks

    for task in classic_tasks() + minatar_tasks():
        register_task(task)


def available_tasks() -> list[str]:
    """Sorted names of all registered tasks."""
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The registered task called ``name``; raises KeyError naming the alternatives."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; available tasks: {', '.join(available_tasks())}")
    return _REGISTRY[name]


_register_builtin()
