"""Checkpoints as safetensors (tensors) + JSON (everything else). Nothing is ever unpickled.

A checkpoint directory ``ckpt_<env_steps>/`` holds ``model.safetensors`` (online and
target network, optimiser moments) and ``state.json`` (counters, optimiser
hyper-parameters). Files are written to a temporary name and renamed, so a reader never
sees a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not match the model."""


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, model: torch.nn.Module, target: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write a checkpoint directory atomically (temp files + rename)."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"target.{k}": v.detach().cpu().contiguous() for k, v in target.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tmp = path / "model.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, path / "model.safetensors")
    meta = {"format": "scalezero-checkpoint-1", "state": state, "optimizer": opt_meta}
    tmp = path / "state.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / "state.json")
    return path


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint with the most environment steps in ``run_dir/checkpoints``."""
    folder = Path(run_dir) / "checkpoints"
    found = sorted(folder.glob("ckpt_*"), key=lambda p: int(p.name.split("_")[1])) if folder.exists() else []
    found = [p for p in found if (p / "state.json").exists() and (p / "model.safetensors").exists()]
    if not found:
        raise CheckpointError(f"no checkpoint found in {folder}")
    return found[-1]


def load_checkpoint(path: Path, model: torch.nn.Module, target: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load tensors into the given modules; returns the JSON state. Raises CheckpointError on any mismatch."""
    try:
        meta = json.loads((path / "state.json").read_text())
        tensors = load_file(str(path / "model.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if meta.get("format") != "scalezero-checkpoint-1":
        raise CheckpointError(f"{path}/state.json is not a scalezero checkpoint (format={meta.get('format')!r})")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        model.load_state_dict(part("model."))
        if target is not None:
            target.load_state_dict(part("target."))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match the model: {exc}") from None
    if optimizer is not None:
        opt = meta["optimizer"]
        state: dict[int, dict] = {}
        for key, value in part("optimizer.").items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        for key, value in opt["scalars"].items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
    return meta["state"]
