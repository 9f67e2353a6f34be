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
    "unknown_task_message",
]

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Add a task to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[task.spec.name] = task


def _register_builtin() -> None:
    from scalezero.tasks.atari import atari_tasks
    from scalezero.tasks.classic import classic_tasks
    from scalezero.tasks.minatar import minatar_tasks
    from scalezero.tasks.text import text_tasks

    for task in classic_tasks() + minatar_tasks() + text_tasks() + atari_tasks():
        register_task(task)

    # MuJoCo families: dm_control / metaworld are imported only when an env is built.
    from scalezero.tasks.dmc import dmc_tasks
    from scalezero.tasks.metaworld import metaworld_tasks

    for task in dmc_tasks() + metaworld_tasks():
        register_task(task)


def available_tasks() -> list[str]:
    """Sorted names of all registered tasks."""
    return sorted(_REGISTRY)


def unknown_task_message(name: str) -> str:
    """One line for a task name that is not registered: the closest names and the families."""
    import difflib

    names = available_tasks()
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    close += [n for n in names if n.endswith(f"-{name}") and n not in close][:4]
    families = sorted({n.split("-", 1)[0] for n in names if "-" in n} | {n for n in names if "-" not in n})
    hint = f"did you mean {', '.join(close[:4])}? " if close else ""
    return (
        f"unknown task {name!r}; {hint}{len(names)} tasks are registered, in the families {', '.join(families)} "
        "(scalezero tasks lists them)"
    )


def get_task(name: str) -> Task:
    """The registered task called ``name``; raises KeyError naming the closest alternatives."""
    if name not in _REGISTRY:
        raise KeyError(unknown_task_message(name))
    return _REGISTRY[name]


_register_builtin()
