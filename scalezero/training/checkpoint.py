"""Crash-safe checkpoints: safetensors + compressed numpy + JSON, verified by SHA-256. Nothing
is ever unpickled.

A checkpoint directory ``ckpt_<env_steps>/`` holds:

* ``model.safetensors``: online and target network, optimiser moments, torch RNG state;
* ``arrays.npz`` (optional): compressed numpy arrays, e.g. every task's replay buffer, read
  back with ``allow_pickle=False``;
* ``state.json``: counters, optimiser hyper-parameters, loop and controller state;
* ``MANIFEST.json``: format tag and the SHA-256 of every other file, written last.

The directory is written under a temporary name, every file is fsynced, then the directory is
renamed into place and its parent fsynced: a crash (even SIGKILL) at any moment leaves either
the complete checkpoint or a ``*.tmp`` directory that readers ignore. Loading verifies every
hash first, so a truncated or bit-flipped file is refused with a message naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scalezero.errors import CheckpointError

__all__ = ["CheckpointError", "latest_checkpoint", "list_checkpoints", "load_arrays", "load_checkpoint", "prune_checkpoints", "save_checkpoint", "verify_checkpoint"]

FORMAT = "scalezero-checkpoint-2"
NAME = re.compile(r"^ckpt_(\d+)$")


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    target: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write checkpoint directory ``path`` atomically (see the module docstring)."""
    path = Path(path)
    tmp = path.parent / f"{path.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"target.{k}": v.detach().cpu().contiguous() for k, v in target.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "model.safetensors"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp / "model.safetensors", 0o666 & ~umask)  # safetensors writes 0600; the rest of the run is 0644
    with open(tmp / "model.safetensors", "rb+") as f:
        os.fsync(f.fileno())
    files = ["model.safetensors"]
    if arrays:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        _write_synced(tmp / "arrays.npz", buffer.getvalue())
        files.append("arrays.npz")
    _write_synced(tmp / "state.json", json.dumps({"state": state, "optimizer": opt_meta}, indent=1).encode())
    files.append("state.json")
    manifest = {"format": FORMAT, "files": {name: _sha256(tmp / name) for name in files}}
    _write_synced(tmp / "MANIFEST.json", json.dumps(manifest, indent=1).encode())
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first (``*.tmp`` leftovers excluded)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.exists():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and NAME.match(p.name) and (p / "MANIFEST.json").exists()]
    return sorted(found, key=lambda p: int(NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint with the most environment steps in ``run_dir/checkpoints``."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint found in {Path(run_dir) / 'checkpoints'}")
    return found[-1]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, leftover ``*.tmp`` directories and
    checkpoint folders without a manifest (what an interrupted delete leaves). Each old
    checkpoint is first renamed to ``*.tmp`` (one atomic step), so a delete cut short leaves
    a leftover the next prune removes, never a half-deleted checkpoint under its own name."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.exists():
        return
    for leftover in folder.glob("*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    for broken in folder.iterdir():
        if broken.is_dir() and NAME.match(broken.name) and not (broken / "MANIFEST.json").exists():
            shutil.rmtree(broken, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        doomed = old.with_name(f"{old.name}.deleting.tmp")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """Check the manifest and every file's hash; returns the manifest or raises CheckpointError."""
    path = Path(path)
    try:
        manifest = json.loads((path / "MANIFEST.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable MANIFEST.json ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"checkpoint {path}: not a {FORMAT} checkpoint")
    for name, digest in manifest["files"].items():
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise CheckpointError(f"checkpoint {path}: invalid file name {name!r} in the manifest")
        file = path / name
        if not file.exists():
            raise CheckpointError(f"checkpoint {path}: {name} is missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"checkpoint {path}: {name} is damaged (its SHA-256 does not match the manifest)")
    return manifest


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    target: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = False,
) -> dict:
    """Verify, then load tensors into the given modules; returns the JSON ``state``.

    Raises CheckpointError on any damage or mismatch, before touching the modules.
    """
    verify_checkpoint(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        tensors = load_file(str(path / "model.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None

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
        try:
            optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path}: optimiser state does not match ({exc})") from None
    if restore_rng and "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return meta["state"]


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays named ``<prefix><name>``, keyed ``<name>``: one part's state among a
    checkpoint's arrays (``env0.``, ``replay1.``, ``novelty0.``)."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's numpy arrays (verify first with :func:`load_checkpoint`)."""
    file = Path(path) / "arrays.npz"
    if not file.exists():
        raise CheckpointError(f"checkpoint {path} holds no arrays (replay buffers)")
    try:
        with np.load(file, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read arrays.npz ({exc})") from None
