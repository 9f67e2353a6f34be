"""Replay: per-task buffers of consecutive steps and the n-step targets computed from them."""

from scalezero.replay.buffer import FINAL_TERMINATED, FINAL_TRUNCATED, STEP, TaskReplay, Window
from scalezero.replay.targets import nstep_value_targets

__all__ = ["FINAL_TERMINATED", "FINAL_TRUNCATED", "STEP", "TaskReplay", "Window", "nstep_value_targets"]
