"""Dynamic Parameter Scaling (ScaleZero): solved tasks leave training, LoRA stages add capacity.

The controller is pure bookkeeping (no tensors), so its rules can be tested on scripted
sequences: it turns evaluation returns into a solved set and decides stage switches; the
loop asks it which tasks still collect and train, and calls :func:`enter_stage` when the
stage changes.

Rules (``DPSConfig``):

* a task is *solved* when its evaluation return reaches its target return; it stops
  collecting and leaves learner batches but is still evaluated; with ``reopen_below > 0`` it
  rejoins when its progress (random return 0, target 1) falls below that fraction;
* stage 0 lasts at least ``min_stage0_updates``; a stage ``s`` ends when the tasks newly solved
  since it began reach ``ceil(unsolved at its start / stages still to come)``, or when it has
  run ``max_stage_updates`` (stage 0: counted from ``min_stage0_updates`` on);
* the last stage never ends.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalezero.config import DPSConfig
from scalezero.model.lora import set_stage
from scalezero.tasks.base import TaskSpec
from scalezero.training.weighting import task_progress


class DPSController:
    """Solved set, stage and switch history of one run."""

    def __init__(self, specs: list[TaskSpec], num_stages: int, cfg: DPSConfig) -> None:
        self.specs = specs
        self.num_stages = num_stages
        self.cfg = cfg
        self.stage = 0
        self.solved: set[int] = set()
        self.stage_start_update = 0
        self.solved_at_stage_start: set[int] = set()
        self.unsolved_at_stage_start = len(specs)
        self.history: list[dict[str, Any]] = []
        """Stage switches and solve/reopen events, in order (logged and checkpointed)."""

    # ------------------------------------------------------------------ queries
    def active_tasks(self) -> list[int]:
        """Tasks that still collect and train (not solved)."""
        return [t for t in range(len(self.specs)) if t not in self.solved]

    def threshold(self) -> int:
        """Newly solved tasks needed to end the current stage early (0 in the last stage)."""
        remaining = self.num_stages - 1 - self.stage
        if remaining <= 0:
            return 0
        return max(1, math.ceil(self.unsolved_at_stage_start / remaining))

    # ------------------------------------------------------------------ updates
    def observe(self, returns: dict[int, float], updates: int, env_steps: int) -> int | None:
        """Update the solved set from an evaluation (task id -> mean return); returns the new
        stage when this triggers a switch, else None."""
        for t, ret in sorted(returns.items()):
            spec = self.specs[t]
            if t not in self.solved and ret >= spec.target_return:
                self.solved.add(t)
                self.history.append({"event": "solved", "task": spec.name, "return": ret, "updates": updates, "env_steps": env_steps})
            elif t in self.solved and self.cfg.reopen_below > 0 and task_progress([ret], spec) < self.cfg.reopen_below:
                self.solved.discard(t)
                self.history.append({"event": "reopened", "task": spec.name, "return": ret, "updates": updates, "env_steps": env_steps})
        return self.maybe_switch(updates, env_steps)

    def maybe_switch(self, updates: int, env_steps: int) -> int | None:
        """Apply the switch rule at ``updates``; returns the new stage if it switched."""
        if self.stage >= self.num_stages - 1:
            return None
        in_stage = updates - self.stage_start_update
        if self.stage == 0:
            if updates < self.cfg.min_stage0_updates:
                return None
            timed_out = updates >= self.cfg.min_stage0_updates + self.cfg.max_stage_updates
        else:
            timed_out = in_stage >= self.cfg.max_stage_updates
        newly = len(self.solved - self.solved_at_stage_start)
        if newly >= self.threshold():
            reason = f"{newly} newly solved (threshold {self.threshold()})"
        elif timed_out:
            reason = f"stage ran {in_stage} updates"
        else:
            return None
        self.history.append({"event": "stage", "from": self.stage, "to": self.stage + 1, "reason": reason, "updates": updates, "env_steps": env_steps})
        self.stage += 1
        self.stage_start_update = updates
        self.solved_at_stage_start = set(self.solved)
        self.unsolved_at_stage_start = len(self.specs) - len(self.solved)
        return self.stage

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "solved": sorted(self.solved),
            "stage_start_update": self.stage_start_update,
            "solved_at_stage_start": sorted(self.solved_at_stage_start),
            "unsolved_at_stage_start": self.unsolved_at_stage_start,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.solved = {int(t) for t in state["solved"]}
        self.stage_start_update = int(state["stage_start_update"])
        self.solved_at_stage_start = {int(t) for t in state["solved_at_stage_start"]}
        self.unsolved_at_stage_start = int(state["unsolved_at_stage_start"])
        self.history = list(state["history"])


def enter_stage(model: torch.nn.Module, target: torch.nn.Module | None, stage: int, cfg: DPSConfig) -> None:
    """Make ``stage`` active in the online model (and set what trains) and in the target
    network (which never trains). From stage 1 the transformer's non-LoRA weights freeze, and
    the encoders and heads too where ``cfg`` says so."""
    set_stage(model.transformer, stage, freeze_others=True)
    if stage >= 1:
        if cfg.freeze_encoders:
            model.encoders.requires_grad_(False)
        if cfg.freeze_heads:
            model.heads.requires_grad_(False)
    if target is not None:
        set_stage(target.transformer, stage, freeze_others=False)
        target.requires_grad_(False)
