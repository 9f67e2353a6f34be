"""scalezero: one world model for many tasks.

A UniZero-style transformer world model trained online on a suite of tasks, planning
every action with batched MCTS inside the model. A single task is a suite of one.
"""

from typing import Any

from scalezero.config import Config, ConfigError, available_suites, load_suite

__all__ = ["Agent", "Config", "ConfigError", "available_suites", "load_agent", "load_suite", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The training API pulls in torch and the environments: import it on first use only.
    if name in ("train", "load_agent", "Agent"):
        from scalezero import api

        return getattr(api, name)
    raise AttributeError(f"module 'scalezero' has no attribute {name!r}")
