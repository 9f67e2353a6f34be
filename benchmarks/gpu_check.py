"""One-shot check of the GPU path: correctness against the CPU, learner and search speed, a short training.

The GPU path had never run when this was written. A session with a lent GPU machine runs it
once, through ``benchmarks/gpu_check.sh``, and reads one JSON file back. Every part runs on its
own (one failure does not hide the others) and the JSON is rewritten after each part, so a run
stopped at its time limit still returns what it had measured.

    python benchmarks/gpu_check.py --device cuda                           # GPU machine, < 8 min
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gc.json # pipeline check, ~1 min

Parts (top-level keys of the JSON, each with ``ok`` and ``seconds``):

* ``environment``: torch, CUDA and device facts; under ``--device cuda`` without CUDA the
  script stops here with a clear message (exit status 2).
* ``correctness``: one small mixed suite (a vector task and two image tasks, MoE feed-forward,
  a sliding window shorter than the sequences) with the same weights on the CPU and on the
  device: encoders, ``forward_sequence``, the learner's losses and gradients, and a greedy
  search, compared as max |difference| (strict float32, and the device's default float32
  mode, which may use TF32); on the device alone, the KV-cached ``initial_inference`` +
  ``recurrent_inference`` path against the full-sequence forward, and batched searches (pUCT
  and Gumbel) returning legal actions and normalised policy targets.
* ``learner_speed``: ``Learner.update`` per second at the model and batch sizes of the shipped
  ``minatar`` and ``atari8`` suites, on synthetic replays (random observations of each task's
  shape, random legal actions; the update's cost does not depend on what the data are), median
  of repeats after warm-up; the minatar size also on the CPU, for a ratio.
* ``search_speed``: batched searches per second (encoding, ``initial_inference`` and the search)
  at 64 and 256 roots with each suite's algorithm and ``num_simulations``.
* ``training``: ``scalezero train --suite cartpole`` on the device for 2,000 env steps: final
  evaluation return, wall time and the run's ``phase_s``.

The JSON goes to ``--out``, by default ``$OUT/gpu_check.json`` when ``OUT`` is set, else
``benchmarks/results/gpu_check.json``; a short table is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, SMOKE_MODEL, git_commit, merge

from scalezero.config import Config, config_from_dict
from scalezero.model import Head, SimNorm, WorldModel
from scalezero.replay import TaskReplay
from scalezero.tasks import SuiteLayout
from scalezero.training.acting import ContextHistory, search_actions
from scalezero.training.learner import Batch, Learner
from scalezero.training.loop import build_model, resolve_tasks

SUITES = ROOT / "scalezero" / "suites"
SEED = 0


# --------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    """Every knob that sets how long the check takes; :data:`FULL` on the GPU, :data:`SMOKE` here."""

    learner_warmup: int
    learner_repeats: int
    learner_per_repeat: int
    cpu_warmup: int
    cpu_repeats: int
    cpu_per_repeat: int
    steps_per_stream: int
    """Synthetic replay: steps written to each of a task's ``num_envs`` streams."""
    search_roots: tuple[int, ...]
    search_warmup: int
    search_repeats: int
    search_simulations: int | None
    """None: each suite's own ``search.num_simulations``."""
    max_tasks: int | None
    """Keep only the first tasks of a suite (None: all)."""
    suite_overrides: dict[str, dict] = field(default_factory=dict)
    """Suite name -> nested overrides applied on top of the shipped YAML."""
    train_sets: tuple[str, ...] = ()
    """``--set`` items of the cartpole training."""


FULL = Sizes(
    learner_warmup=3,
    learner_repeats=5,
    learner_per_repeat=5,
    cpu_warmup=1,
    cpu_repeats=3,
    cpu_per_repeat=2,
    steps_per_stream=256,
    search_roots=(64, 256),
    search_warmup=1,
    search_repeats=3,
    search_simulations=None,
    max_tasks=None,
    train_sets=("train.env_steps=2000",),
)

SMOKE = Sizes(
    learner_warmup=1,
    learner_repeats=2,
    learner_per_repeat=1,
    cpu_warmup=1,
    cpu_repeats=1,
    cpu_per_repeat=1,
    steps_per_stream=24,
    search_roots=(4, 8),
    search_warmup=1,
    search_repeats=2,
    search_simulations=4,
    max_tasks=2,
    suite_overrides={
        "minatar": {"model": SMOKE_MODEL, "train": {"batch_size": 4}, "replay": {"unroll_steps": 3, "td_steps": 2}},
        "atari8": {
            "model": {**SMOKE_MODEL, "attention_window_steps": 4},  # the suite's 10 needs unroll_steps >= 9
            "train": {"batch_size": 2},
            "replay": {"unroll_steps": 3, "td_steps": 2},
        },
    },
    train_sets=(
        "train.env_steps=64",
        "train.num_envs=4",
        "train.learning_starts=32",
        "train.batch_size=8",
        "train.eval_every=64",
        "train.eval_episodes=2",
        "train.eval_max_steps=25",
        "train.checkpoint_every=64",
        "search.num_simulations=4",
    ),
)


# ------------------------------------------------------------------- small helpers
def default_out() -> Path:
    """``$OUT/gpu_check.json`` on the device machine (what comes back), else the results folder."""
    out = os.environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else RESULTS / "gpu_check.json"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two tensors, compared on the CPU in float32."""
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


def suite_config(name: str, sizes: Sizes, extra: dict | None = None) -> Config:
    """A shipped suite as :data:`Sizes` shrinks it (fewer tasks, smaller model), plus ``extra``."""
    data = yaml.safe_load((SUITES / f"{name}.yaml").read_text())
    data = merge(data, sizes.suite_overrides.get(name, {}))
    if extra:
        data = merge(data, extra)
    if sizes.max_tasks is not None:
        data["tasks"] = data["tasks"][: sizes.max_tasks]
    data["suite"] = name
    return config_from_dict(data)


def randomize_heads(model: WorldModel, std: float = 0.3) -> None:
    """Heads start at zero (every output constant); random last layers make outputs depend on
    the input, so comparisons mean something and search trees take varied shapes."""
    for module in model.modules():
        if isinstance(module, Head):
            nn.init.normal_(module.net[-1].weight, std=std)
            nn.init.normal_(module.net[-1].bias, std=std)


@contextlib.contextmanager
def float32_mode(strict: bool) -> Iterator[None]:
    """``strict``: float32 matmuls and convolutions without TF32 (the same arithmetic as the
    CPU up to rounding); otherwise the device's defaults, which training runs with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if strict:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_flags() -> dict[str, bool]:
    """Whether float32 matmuls (cuBLAS) and convolutions (cuDNN) may use TF32 right now."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "cudnn": bool(torch.backends.cudnn.allow_tf32)}


def random_obs(layout: SuiteLayout, task: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` observations of a task's own shape: images in ``0..obs_scale`` (uint8), vectors
    standard normal (float32)."""
    spec = layout.specs[task]
    if spec.obs_kind == "image":
        return rng.integers(0, int(spec.obs_scale) + 1, size=(count, *spec.obs_shape), dtype=np.uint8)
    if spec.obs_kind == "vector":
        return rng.normal(size=(count, *spec.obs_shape)).astype(np.float32)
    raise ValueError(f"no synthetic observations for obs kind {spec.obs_kind!r}")


def random_actions(layout: SuiteLayout, task: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Actions drawn uniformly from what the task has (int64)."""
    return rng.choice(np.flatnonzero(layout.action_masks[task]), size=shape).astype(np.int64)


def synthetic_replays(config: Config, layout: SuiteLayout, steps_per_stream: int, rng: np.random.Generator) -> dict[int, TaskReplay]:
    """One replay per task, shaped as the collector builds it, filled with random steps:
    random observations and legal actions, sparse rewards, uniform policy targets over the
    task's actions, and episodes that end with probability 1/50 per step."""
    streams = config.train.num_envs
    replays = {}
    for t in range(layout.num_tasks):
        legal = layout.action_masks[t]
        policy = np.broadcast_to(legal / legal.sum(), (streams, layout.num_actions)).astype(np.float32)
        replay = TaskReplay(
            obs_shape=layout.specs[t].obs_shape,
            obs_dtype=random_obs(layout, t, 1, rng).dtype,
            num_actions=layout.num_actions,
            num_streams=streams,
            capacity=streams * (steps_per_stream + steps_per_stream // 4 + 2),
            keep_legal=True,
        )
        for _ in range(steps_per_stream):
            rewards = (rng.random(streams) < 0.2).astype(np.float32)
            replay.add_steps(
                random_obs(layout, t, streams, rng),
                random_actions(layout, t, (streams,), rng),
                rewards,
                policy,
                rng.normal(size=streams).astype(np.float32),
                np.broadcast_to(legal, (streams, layout.num_actions)),
            )
            done = np.flatnonzero(rng.random(streams) < 0.02)
            replay.add_finals(done, random_obs(layout, t, done.size, rng), rng.random(done.size) < 0.5)
        replays[t] = replay
    return replays


def synthetic_histories(layout: SuiteLayout, roots: int, context_steps: int, rng: np.random.Generator) -> dict[int, ContextHistory]:
    """``roots`` search roots split as evenly as possible over the tasks, each with random
    context steps (some rows start their episode inside the context: invalid older slots)."""
    histories = {}
    for t in range(layout.num_tasks):
        n = roots // layout.num_tasks + (t < roots % layout.num_tasks)
        if n == 0:
            continue
        steps = context_steps + 1
        flat = layout.pad_obs(t, random_obs(layout, t, n * steps, rng))
        obs = flat.reshape((n, steps) + flat.shape[1:])
        actions = random_actions(layout, t, (n, steps), rng)
        actions[:, -1] = 0
        valid = np.ones((n, steps), dtype=bool)
        starts = rng.integers(0, steps, size=n)
        valid[np.arange(steps)[None, :] < starts[:, None]] = False
        histories[t] = ContextHistory.from_arrays(obs, actions, valid)
    return histories


# --------------------------------------------------------------------- environment
def environment(device: torch.device) -> dict[str, Any]:
    """Versions and device facts the other numbers depend on."""
    import numba

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch_threads": torch.get_num_threads(),
        "tf32_default": tf32_flags(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "gymnasium_installed": importlib.util.find_spec("gymnasium") is not None,
        "minatar_installed": importlib.util.find_spec("minatar") is not None,
        "device": str(device),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_name=torch.cuda.get_device_name(0),
            device_count=torch.cuda.device_count(),
            capability=list(torch.cuda.get_device_capability(0)),
            total_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


# --------------------------------------------------------------------- correctness
def correctness_config() -> Config:
    """A small mixed suite that touches every part the GPU runs: a vector and two image tasks
    (different action sets, padded channels), MoE feed-forward with a shared expert, and an
    attention window (4 steps) shorter than the sequences compared."""
    return config_from_dict(
        {
            "tasks": ["cartpole", "minatar-breakout", "minatar-seaquest"],
            "model": {
                "embed_dim": 64,
                "num_layers": 2,
                "num_heads": 4,
                "mlp_hidden": 64,
                "conv_channels": 16,
                "attention_window_steps": 4,
                "moe_num_experts": 4,
                "moe_top_k": 1,
                "moe_shared_expert": True,
            },
            "search": {"num_simulations": 12},
            "replay": {"unroll_steps": 5, "td_steps": 3},
            "train": {"num_envs": 4, "batch_size": 6, "context_steps": 3},
        }
    )


def compare_forward(
    cpu: WorldModel, dev: WorldModel, layout: SuiteLayout, device: torch.device, rng: np.random.Generator
) -> dict[str, float]:
    """Encoders and ``forward_sequence`` on the same inputs on both: max |difference| of the
    latents and of every output (all rows, all steps; illegal logits are -1e9 on both)."""
    steps, per_task = 7, 3
    latents_cpu, latents_dev, encode_diff = [], [], 0.0
    for t in range(layout.num_tasks):
        obs = layout.pad_obs(t, random_obs(layout, t, per_task * steps, rng))
        z_cpu = cpu.encode(torch.as_tensor(obs), layout.kind(t))
        z_dev = dev.encode(torch.as_tensor(obs, device=device), layout.kind(t))
        encode_diff = max(encode_diff, max_abs_diff(z_cpu, z_dev))
        latents_cpu.append(z_cpu.view(per_task, steps, -1))
        latents_dev.append(z_dev.view(per_task, steps, -1))
    task_ids = torch.as_tensor(np.repeat(np.arange(layout.num_tasks), per_task))
    actions = torch.as_tensor(np.concatenate([random_actions(layout, t, (per_task, steps), rng) for t in range(layout.num_tasks)]))
    step_valid = torch.ones(len(task_ids), steps, dtype=torch.bool)
    step_valid[1, :2] = False  # some left padding
    lat = torch.cat(latents_cpu)  # the same latents on both sides: the transformer compared alone
    out_cpu = cpu.forward_sequence(lat, actions, task_ids, step_valid)
    out_dev = dev.forward_sequence(lat.to(device), actions.to(device), task_ids.to(device), step_valid.to(device))
    diffs = {"encode": encode_diff}
    for name in ("value_logits", "policy_logits", "reward_logits", "next_latent"):
        diffs[name] = max_abs_diff(getattr(out_cpu, name), getattr(out_dev, name))
    # The device's own latents through the device's sequence: encoder and transformer errors together.
    end_to_end = dev.forward_sequence(torch.cat(latents_dev), actions.to(device), task_ids.to(device), step_valid.to(device))
    diffs["end_to_end_value_logits"] = max_abs_diff(out_cpu.value_logits, end_to_end.value_logits)
    return diffs


def compare_losses(
    cpu: WorldModel, dev: WorldModel, config: Config, layout: SuiteLayout, device: torch.device, rng: np.random.Generator
) -> dict[str, float]:
    """The learner's losses on one batch and their gradients, CPU against device: max
    |difference| of the named losses, and of the gradients relative to the largest gradient."""
    replays = synthetic_replays(config, layout, 32, rng)
    learners = [Learner(cpu, layout, config, torch.device("cpu")), Learner(dev, layout, config, device)]
    batch = learners[0].sample(replays, list(range(layout.num_tasks)))
    results = []
    for learner in learners:
        learner.model.zero_grad(set_to_none=True)
        out = learner.compute_losses(batch)
        out.total.backward()
        results.append(out)
    loss_diff = max(abs(float(results[0].losses[k].detach()) - float(results[1].losses[k].detach())) for k in results[0].losses)
    grads = [(p.grad, q.grad) for p, q in zip(cpu.parameters(), dev.parameters()) if p.grad is not None]
    scale = max(float(g.abs().max()) for g, _ in grads)
    grad_diff = max(max_abs_diff(g, h) for g, h in grads) / max(scale, 1e-12)
    cpu.zero_grad(set_to_none=True)
    dev.zero_grad(set_to_none=True)
    total_diff = abs(float(results[0].total.detach()) - float(results[1].total.detach()))
    return {"losses": loss_diff, "total_loss": total_diff, "grads_relative": grad_diff}


def check_kv_cache(model: WorldModel, layout: SuiteLayout, device: torch.device, rng: np.random.Generator) -> dict[str, float]:
    """On the device: a root from ``initial_inference`` (3 context steps, left padding), then 6
    chained ``recurrent_inference`` steps on the growing cache, against ``forward_sequence``
    over the same 9 steps (the imagined latents in place of observed ones). The window is 4
    steps, so the check covers keys sliding out of it. Returns max |difference| per output."""
    ctx, depth, dim = 3, 6, model.embed_dim
    task_ids = torch.arange(layout.num_tasks, device=device)
    b = len(task_ids)
    gen = torch.Generator().manual_seed(3)
    latents = SimNorm(model.cfg.simnorm_group)(torch.randn(b, ctx, dim, generator=gen) * 2).to(device)
    actions = torch.as_tensor(np.stack([random_actions(layout, t, (ctx - 1,), rng) for t in range(b)]), device=device)
    step_valid = torch.ones(b, ctx, dtype=torch.bool, device=device)
    step_valid[1, :1] = False
    step_valid[2, :2] = False  # this row has the root alone
    imagined = torch.as_tensor(np.stack([random_actions(layout, t, (depth,), rng) for t in range(b)]), device=device)
    root = model.initial_inference(latents, actions, task_ids, step_valid)
    cache, steps = root.cache, []
    for k in range(depth):
        position = cache.next_position()
        out = model.recurrent_inference(cache, imagined[:, k], task_ids, position=position)
        pair = torch.stack([position, position + 1], dim=1)
        cache = cache.append(out.new_token_kv, pair, torch.ones_like(pair, dtype=torch.bool))
        steps.append(out)
    full = model.forward_sequence(
        torch.cat([latents, torch.stack([s.next_latent for s in steps], dim=1)], dim=1),
        torch.cat([actions, imagined, torch.zeros_like(actions[:, :1])], dim=1),
        task_ids,
        torch.cat([step_valid, torch.ones(b, depth, dtype=torch.bool, device=device)], dim=1),
    )
    diffs = {
        "root_value_logits": max_abs_diff(root.value_logits, full.value_logits[:, ctx - 1]),
        "root_policy_logits": max_abs_diff(root.policy_logits, full.policy_logits[:, ctx - 1]),
        "reward_logits": 0.0,
        "next_latent": 0.0,
        "value_logits": 0.0,
        "policy_logits": 0.0,
    }
    for k, out in enumerate(steps):
        diffs["reward_logits"] = max(diffs["reward_logits"], max_abs_diff(out.reward_logits, full.reward_logits[:, ctx - 1 + k]))
        diffs["next_latent"] = max(diffs["next_latent"], max_abs_diff(out.next_latent, full.next_latent[:, ctx - 1 + k]))
        diffs["value_logits"] = max(diffs["value_logits"], max_abs_diff(out.value_logits, full.value_logits[:, ctx + k]))
        diffs["policy_logits"] = max(diffs["policy_logits"], max_abs_diff(out.policy_logits, full.policy_logits[:, ctx + k]))
    return diffs


def check_search(cpu: WorldModel, dev: WorldModel, config: Config, layout: SuiteLayout, device: torch.device) -> dict[str, Any]:
    """Batched searches on the device (pUCT and Gumbel, exploring): every action legal for its
    task, policy targets normalised and zero off the task's actions, root values finite. Also
    greedy pUCT on the CPU and on the device from the same roots: the share of equal actions
    and the largest root-value difference (information; float rounding may break ties)."""
    rng = np.random.default_rng(SEED + 11)
    histories = synthetic_histories(layout, 24, config.train.context_steps, rng)
    result: dict[str, Any] = {"roots": sum(h.obs.shape[0] for h in histories.values()), "simulations": config.search.num_simulations}
    valid = True
    for algorithm in ("puct", "gumbel"):
        search = dataclasses.replace(config.search, algorithm=algorithm)
        start = time.perf_counter()
        out = search_actions(dev, layout, histories, search, config.train.discount, np.random.default_rng(SEED), True, device)
        result[f"{algorithm}_first_call_s"] = round(time.perf_counter() - start, 3)  # includes numba compilation on a cold cache
        for t, part in out.outputs.items():
            legal = layout.action_masks[t]
            s = part.search
            valid &= bool(legal[s.action].all())
            valid &= bool(np.allclose(s.policy_target.sum(1), 1.0, atol=1e-4)) and bool((s.policy_target[:, ~legal] == 0).all())
            valid &= bool(np.isfinite(s.root_value).all())
    result["valid"] = valid
    greedy = [
        search_actions(model, layout, histories, config.search, config.train.discount, np.random.default_rng(SEED), False, where)
        for model, where in ((cpu, torch.device("cpu")), (dev, device))
    ]
    actions = [np.concatenate([g.outputs[t].search.action for t in histories]) for g in greedy]
    values = [np.concatenate([g.outputs[t].search.root_value for t in histories]) for g in greedy]
    result["greedy_action_agreement"] = float((actions[0] == actions[1]).mean())
    result["greedy_root_value_max_abs_diff"] = float(np.abs(values[0] - values[1]).max())
    return result


def correctness(device: torch.device, tol: float) -> dict[str, Any]:
    """Same weights on the CPU and the device; every comparison under strict float32 must stay
    within ``tol``; the device's default float32 mode is reported beside it."""
    config = correctness_config()
    _, layout = resolve_tasks(config)
    torch.manual_seed(SEED)
    cpu = build_model(config, layout, torch.device("cpu"))
    randomize_heads(cpu)
    cpu.eval()
    dev = copy.deepcopy(cpu).to(device).eval()
    result: dict[str, Any] = {"tolerance": tol, "parameters": cpu.parameter_count()}
    for mode, strict in (("strict_fp32", True), ("default_fp32", False)):
        with float32_mode(strict):
            with torch.no_grad():
                forward = compare_forward(cpu, dev, layout, device, np.random.default_rng(SEED + 1))
                kv = check_kv_cache(dev, layout, device, np.random.default_rng(SEED + 2))
            losses = compare_losses(cpu, dev, config, layout, device, np.random.default_rng(SEED + 3))
        result[mode] = {"forward": forward, "kv_cache": kv, "learner": losses}
    with float32_mode(True):
        result["search"] = check_search(cpu, dev, config, layout, device)
    strict = result["strict_fp32"]
    worst = {part: max(values.values()) for part, values in strict.items()}
    result["strict_max_abs_diff"] = worst
    result["default_max_abs_diff"] = {part: max(values.values()) for part, values in result["default_fp32"].items()}
    result["passed"] = {part: value <= tol for part, value in worst.items()} | {"search_valid": result["search"]["valid"]}
    result["ok"] = all(result["passed"].values())
    if not result["ok"]:
        result["error"] = "failed: " + ", ".join(k for k, v in result["passed"].items() if not v)
    return result


# ------------------------------------------------------------------- learner speed
def time_updates(learner: Learner, batches: list[Batch], warmup: int, repeats: int, per_repeat: int) -> dict[str, float]:
    """Median seconds of one ``Learner.update`` over ``repeats`` timed groups of ``per_repeat``
    updates after ``warmup`` (batches reused in turn: an update costs the same on any batch)."""
    for i in range(warmup):
        learner.update(batches[i % len(batches)])
    synchronize(learner.device)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(per_repeat):
            metrics = learner.update(batches[(r * per_repeat + i) % len(batches)])
        synchronize(learner.device)
        times.append((time.perf_counter() - start) / per_repeat)
    median = statistics.median(times)
    return {
        "seconds_per_update": median,
        "updates_per_s": 1.0 / median,
        "seconds_all_repeats": times,
        "final_loss": float(metrics.get("loss/total", float("nan"))),
    }


def measure_learner(suite: str, sizes: Sizes, device: torch.device, warmup: int, repeats: int, per_repeat: int) -> dict[str, Any]:
    """Updates per second of one suite's model and batch on ``device``, on synthetic replays."""
    config = suite_config(suite, sizes, {"train": {"device": device.type}})
    _, layout = resolve_tasks(config)
    rng = np.random.default_rng(SEED)
    replays = synthetic_replays(config, layout, sizes.steps_per_stream, rng)
    torch.manual_seed(SEED)
    model = build_model(config, layout, device)
    learner = Learner(model, layout, config, device)
    ids = list(range(layout.num_tasks))
    sample_times, batches = [], []
    for _ in range(min(4, warmup + repeats * per_repeat)):
        start = time.perf_counter()
        batches.append(learner.sample(replays, ids))
        sample_times.append(time.perf_counter() - start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timing = time_updates(learner, batches, warmup, repeats, per_repeat)
    result: dict[str, Any] = {
        "suite": suite,
        "device": str(device),
        "tasks": layout.num_tasks,
        "windows_per_update": sum(learner.batch_sizes),
        "window_steps": config.replay.unroll_steps + config.replay.td_steps + 1,
        "embed_dim": config.model.embed_dim,
        "num_layers": config.model.num_layers,
        "num_heads": config.model.num_heads,
        "moe_num_experts": config.model.moe_num_experts,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tf32": tf32_flags(),  # the device's defaults, as training runs
        "sample_seconds": statistics.median(sample_times),
        **timing,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if not math.isfinite(result["final_loss"]):
        raise RuntimeError(f"{suite}: the last update's loss is not finite ({result['final_loss']})")
    del learner, model, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def learner_speed(device: torch.device, sizes: Sizes, cpu_threads: int) -> dict[str, Any]:
    """``minatar`` and ``atari8`` sizes on the device; ``minatar`` on the CPU too (a ratio)."""
    result: dict[str, Any] = {}
    for suite in ("minatar", "atari8"):
        result[suite] = measure_learner(suite, sizes, device, sizes.learner_warmup, sizes.learner_repeats, sizes.learner_per_repeat)
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads)
    try:
        cpu = measure_learner("minatar", sizes, torch.device("cpu"), sizes.cpu_warmup, sizes.cpu_repeats, sizes.cpu_per_repeat)
    finally:
        torch.set_num_threads(threads)
    cpu["torch_threads"] = cpu_threads
    result["minatar_cpu"] = cpu
    result["minatar_device_over_cpu"] = result["minatar"]["updates_per_s"] / cpu["updates_per_s"]
    return result


# -------------------------------------------------------------------- search speed
def search_speed(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """Searches per second (encode the contexts, ``initial_inference``, the batched search) with
    each suite's model, algorithm and simulations, at each root count of :data:`Sizes`."""
    result: dict[str, Any] = {}
    for suite in ("minatar", "atari8"):
        extra = {"search": {"num_simulations": sizes.search_simulations}} if sizes.search_simulations else None
        config = suite_config(suite, sizes, extra)
        _, layout = resolve_tasks(config)
        torch.manual_seed(SEED)
        model = build_model(config, layout, device)
        randomize_heads(model)
        model.eval()
        rows = []
        for roots in sizes.search_roots:
            rng = np.random.default_rng(SEED + roots)
            histories = synthetic_histories(layout, roots, config.train.context_steps, rng)
            for _ in range(sizes.search_warmup):
                search_actions(model, layout, histories, config.search, config.train.discount, rng, True, device)
            times = []
            for _ in range(sizes.search_repeats):
                synchronize(device)
                start = time.perf_counter()
                search_actions(model, layout, histories, config.search, config.train.discount, rng, True, device)
                synchronize(device)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            rows.append(
                {
                    "roots": roots,
                    "seconds_per_search": median,
                    "searches_per_s": 1.0 / median,
                    "root_simulations_per_s": roots * config.search.num_simulations / median,
                }
            )
        result[suite] = {
            "algorithm": config.search.algorithm,
            "num_simulations": config.search.num_simulations,
            "context_steps": config.train.context_steps,
            "embed_dim": config.model.embed_dim,
            "num_layers": config.model.num_layers,
            "by_roots": rows,
        }
        del model
    return result


# ------------------------------------------------------------------------ training
def training(device: torch.device, sizes: Sizes, seconds_left: float) -> dict[str, Any]:
    """``scalezero train --suite cartpole`` on the device in a child process (as a user runs it),
    limited to the time left; reads the run's ``metrics.json``."""
    if importlib.util.find_spec("gymnasium") is None:
        raise RuntimeError("gymnasium is not installed (cartpole needs it): carry its wheel in .whl/, see benchmarks/gpu_check.sh")
    if seconds_left < 45:
        raise RuntimeError(f"skipped: only {seconds_left:.0f} s of the time budget left")
    run = Path(tempfile.mkdtemp(prefix="gpu_check_cartpole_"))
    sets = list(sizes.train_sets)
    command = [sys.executable, "-m", "scalezero.cli", "train", "--suite", "cartpole", "--device", device.type, "--seed", str(SEED)]
    command += ["--out", str(run / "run"), "--quiet", "--set", *sets]
    start = time.perf_counter()
    try:
        with open(run / "train.log", "w") as log:
            try:
                proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=seconds_left - 10, check=False)
                status = f"exited with {proc.returncode}" if proc.returncode else None
            except subprocess.TimeoutExpired:
                status = f"was stopped after {seconds_left - 10:.0f} s (the time budget left)"
        wall = time.perf_counter() - start
        log_tail = (run / "train.log").read_text()[-2000:]
        if status is not None:
            raise RuntimeError(f"scalezero train {status}; its output ends:\n{log_tail}")
        metrics = json.loads((run / "run" / "metrics.json").read_text())
    finally:
        shutil.rmtree(run, ignore_errors=True)
    summary = metrics["summary"]
    final = summary["final_eval"]["cartpole"]
    return {
        "command": " ".join(["scalezero", *command[3:]]),
        "process_wall_s": round(wall, 2),
        "wall_s": summary["wall_s"],
        "env_steps": summary["env_steps_total"],
        "updates": summary["updates"],
        "env_steps_per_s": summary["env_steps_per_s"],
        "updates_per_s": summary["updates_per_s"],
        "phase_s": summary["phase_s"],
        "final_return_mean": final["return_mean"],
        "final_length_mean": final["length_mean"],
        "eval_curve": [[row["env_steps"], row["return_mean"]] for row in metrics["eval"]],
        "log_tail": log_tail[-1000:],
    }


# ----------------------------------------------------------------------- reporting
def run_part(report: dict[str, Any], name: str, part: Callable[[], dict[str, Any]], out: Path) -> None:
    """Run one part; record its result (``ok`` unless it says otherwise) or its error, and its
    seconds; rewrite the JSON so a run stopped later keeps this part."""
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    try:
        result = part()
        result.setdefault("ok", True)
    except Exception as exc:  # noqa: BLE001 - one part's failure must not hide the others
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.perf_counter() - start, 2)
    report[name] = result
    write_json(report, out)
    verdict = "ok" if result["ok"] else "FAILED: " + (_failed(result) or f"see {out}")
    print(f"[gpu_check] {name}: {verdict} ({result['seconds']} s)", flush=True)


def write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


def _fmt(x: float) -> str:
    return f"{x:.1e}" if x < 0.01 else f"{x:.3g}"


def _failed(part: dict[str, Any]) -> str:
    """The first line of a failed part's error (or nothing, for a part not run)."""
    return part.get("error", "").splitlines()[0][:160] if part.get("error") else ""


def _correctness_text(c: dict[str, Any]) -> str:
    s, d = c["strict_max_abs_diff"], c["default_max_abs_diff"]
    return (
        f"max|diff| strict fp32: forward {_fmt(s['forward'])}, kv-cache {_fmt(s['kv_cache'])}, learner {_fmt(s['learner'])} "
        f"(tol {c['tolerance']:g}); default fp32: {_fmt(d['forward'])} / {_fmt(d['kv_cache'])} / {_fmt(d['learner'])}; "
        f"search valid {c['search']['valid']}, greedy agreement {c['search']['greedy_action_agreement']:.2f}"
    )


def _learner_text(r: dict[str, Any]) -> str:
    memory = f", peak {r['peak_memory_gib']} GiB" if "peak_memory_gib" in r else ""
    return (
        f"{r['updates_per_s']:.2f} updates/s ({r['windows_per_update']} windows x {r['window_steps']} steps, "
        f"width {r['embed_dim']}, {r['parameters']:,} params{memory}); sampling {1e3 * r['sample_seconds']:.0f} ms"
    )


def _search_text(r: dict[str, Any]) -> str:
    per_roots = ", ".join(
        f"{row['roots']} roots {row['searches_per_s']:.2f}/s ({row['root_simulations_per_s']:,.0f} sims/s)" for row in r["by_roots"]
    )
    return f"{r['algorithm']} x{r['num_simulations']}: {per_roots}"


def _training_text(r: dict[str, Any]) -> str:
    phases = ", ".join(f"{k} {v:.0f}" for k, v in r["phase_s"].items())
    return (
        f"{r['env_steps']} steps, {r['updates']} updates: eval return {r['final_return_mean']:.1f}, "
        f"wall {r['wall_s']:.0f} s (phase_s: {phases})"
    )


def summary_lines(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(part, ok/FAIL/-, what it found) rows of the closing table."""
    rows: list[tuple[str, bool | None, str]] = []
    env = report.get("environment", {})
    name = env.get("device_name", env.get("device", "?"))
    rows.append(("environment", env.get("ok"), f"{name}, torch {env.get('torch', '?')}, CUDA build {env.get('torch_cuda_build')}"))
    c = report.get("correctness", {})
    rows.append(("correctness", c.get("ok"), _correctness_text(c) if "strict_max_abs_diff" in c else _failed(c)))
    ls = report.get("learner_speed", {})
    if ls.get("ok"):
        rows += [(f"learner {suite}", True, _learner_text(ls[suite])) for suite in ("minatar", "atari8")]
        cpu = ls["minatar_cpu"]
        ratio = f"{cpu['updates_per_s']:.2f} updates/s ({cpu['torch_threads']} threads): device/cpu x{ls['minatar_device_over_cpu']:.1f}"
        rows.append(("learner minatar cpu", True, ratio))
    else:
        rows.append(("learner", ls.get("ok"), _failed(ls)))
    ss = report.get("search_speed", {})
    if ss.get("ok"):
        rows += [(f"search {suite}", True, _search_text(ss[suite])) for suite in ("minatar", "atari8")]
    else:
        rows.append(("search", ss.get("ok"), _failed(ss)))
    tr = report.get("training", {})
    rows.append(("training cartpole", tr.get("ok"), _training_text(tr) if tr.get("ok") else _failed(tr)))
    return [(part, "ok" if ok else ("FAIL" if ok is False else "-"), text) for part, ok, text in rows]


def print_table(report: dict[str, Any]) -> None:
    rows = summary_lines(report)
    width = max(len(r[0]) for r in rows)
    print()
    for name, ok, text in rows:
        print(f"{name:<{width}}  {ok:<4}  {text}")


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: run the same checks on the CPU (a smoke run)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline in about a minute (numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: $OUT/gpu_check.json, else benchmarks/results/gpu_check.json)")
    parser.add_argument("--tol", type=float, default=1e-3, help="max |difference| allowed in the strict float32 comparisons")
    parser.add_argument("--cpu-threads", type=int, default=None, help="torch threads for the CPU side (default: 1 with --smoke, else all cores)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="the training part gets what is left of this")
    parts = ["correctness", "learner_speed", "search_speed", "training"]
    parser.add_argument("--skip", nargs="*", default=[], choices=parts, help="parts not to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    begin = time.perf_counter()
    out = args.out or default_out()
    sizes = SMOKE if args.smoke else FULL
    cpu_threads = args.cpu_threads or (1 if args.smoke else (os.cpu_count() or 1))
    torch.set_num_threads(cpu_threads)
    device = torch.device(args.device)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": args.smoke,
        "device": args.device,
    }
    run_part(report, "environment", lambda: environment(device), out)
    if args.device == "cuda" and not torch.cuda.is_available():
        report["environment"]["ok"] = False
        report["environment"]["error"] = f"--device cuda but torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda})"
        write_json(report, out)
        print(f"gpu_check: {report['environment']['error']}", file=sys.stderr)
        return 2
    torch.manual_seed(SEED)
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "correctness": lambda: correctness(device, args.tol),
        "learner_speed": lambda: learner_speed(device, sizes, cpu_threads),
        "search_speed": lambda: search_speed(device, sizes),
        "training": lambda: training(device, sizes, args.budget_s - (time.perf_counter() - begin)),
    }
    for name, part in parts.items():
        if name not in args.skip:
            run_part(report, name, part, out)
    report["total_seconds"] = round(time.perf_counter() - begin, 2)
    report["ok"] = all(report[name]["ok"] for name in ["environment", *parts] if name in report)
    write_json(report, out)
    print_table(report)
    print(f"\n{'all parts ok' if report['ok'] else 'SOME PARTS FAILED'} in {report['total_seconds']:.0f} s; written: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
