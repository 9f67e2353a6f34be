"""Task registry: every environment family registers its tasks here by name.

``get_task(name)`` is the only way the rest of the code obtains a task; an unknown name
fails with the list of registered names.
"""

from __future__ import annotations

from scalezero.config import ConfigError
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
    "task_families",
    "unknown_task_message",
]

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Add a task to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[task.spec.name] = task


def _register_builtin() -> None:
    from scalezero.tasks.atari import atari_tasks
    from scalezero.tasks.classic import classic_tasks
    from scalezero.tasks.jericho import jericho_tasks
    from scalezero.tasks.minatar import minatar_tasks
    from scalezero.tasks.textworld import textworld_tasks

    for task in classic_tasks() + minatar_tasks() + textworld_tasks() + jericho_tasks() + atari_tasks():
        register_task(task)

    # MuJoCo families: dm_control / metaworld are imported only when an env is built.
    from scalezero.tasks.dmc import dmc_tasks
    from scalezero.tasks.metaworld import metaworld_tasks

    for task in dmc_tasks() + metaworld_tasks():
        register_task(task)


def available_tasks() -> list[str]:
    """Sorted names of all registered tasks."""
    return sorted(_REGISTRY)


def task_families() -> dict[str, list[str]]:
    """Registered task names by family, the prefix before the first ``-`` (``atari``, ``dmc``,
    ``jericho``, ``minatar``, ``mw``, ``textworld``); names without one (``cartpole``, ``acrobot``) are ``classic``."""
    families: dict[str, list[str]] = {}
    for name in available_tasks():
        families.setdefault(name.split("-", 1)[0] if "-" in name else "classic", []).append(name)
    return dict(sorted(families.items()))


def unknown_task_message(name: str) -> str:
    """One line for a task name that is not registered: the closest names and the families."""
    from scalezero.errors import did_you_mean

    names = available_tasks()
    hint = did_you_mean(name, names, also=[n for n in names if n.endswith(f"-{name}")])
    return (
        f"unknown task {name!r}; {hint}{len(names)} tasks are registered, in the families {', '.join(task_families())} "
        "(scalezero tasks lists them)"
    )


class UnknownTaskError(ConfigError, KeyError):
    """No task is registered under this name (a :class:`~scalezero.config.ConfigError`, and a
    ``KeyError`` for code that looks tasks up like a mapping)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_task(name: str) -> Task:
    """The registered task called ``name``; raises :class:`UnknownTaskError` naming the
    closest alternatives."""
    if name not in _REGISTRY:
        raise UnknownTaskError(unknown_task_message(name))
    return _REGISTRY[name]


_register_builtin()
