"""scalezero: one world model for many tasks.

A UniZero-style transformer world model trained online on a suite of tasks, planning
every action with batched MCTS inside the model. A single task is a suite of one.
"""

from scalezero.config import Config, ConfigError, available_suites, load_suite

__all__ = ["Config", "ConfigError", "available_suites", "load_suite"]
__version__ = "0.1.0"
