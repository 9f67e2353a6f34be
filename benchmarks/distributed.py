"""Learner throughput with 1 vs N processes (torch.distributed, gloo on CPU, NCCL on GPU).

Each configuration runs under ``torch.distributed.run``: the suite's tasks are split between the
ranks exactly as in training (``training/distributed.partition``), every rank fills its own
tasks' replays with random-policy data and then times learner updates, each of which combines
the ranks' gradients (the all-reduce is inside the timing). The CPU threads are shared out:
``--threads`` in all, ``threads // N`` per rank. An update always covers every task of the
suite with the same batch per task, so updates/s compare directly.

    python benchmarks/distributed.py --suite minatar --procs 1 2 --threads 2

Writes ``benchmarks/results/distributed_<suite>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result


def worker(args: argparse.Namespace) -> None:
    """One rank: fill its replays, time ``repeats x per_repeat`` updates, rank 0 writes the median."""
    import torch
    from learner import filled_learner

    from scalezero.config import load_suite
    from scalezero.training.distributed import broadcast_parameters, init_from_env, partition
    from scalezero.training.loop import pick_device

    torch.set_num_threads(args.threads)
    config = load_suite(args.suite)
    device = pick_device(args.device)
    num_tasks = len(config.tasks)
    info = init_from_env(device)
    own = partition(num_tasks, info.world)[info.rank] if info.enabled else list(range(num_tasks))
    torch.manual_seed(0)
    _, _, model, collector, learner = filled_learner(config, device, seed=info.rank, task_ids=own)
    if info.enabled:
        broadcast_parameters(model)
        broadcast_parameters(learner.target)
        learner.distributed = True
        learner.grad_weight = len(own) / num_tasks
    for _ in range(3):
        learner.update(learner.sample(collector.replays, own))
    times = []
    for _ in range(args.repeats):
        if info.enabled:
            torch.distributed.barrier()
        start = time.perf_counter()
        for _ in range(args.per_repeat):
            learner.update(learner.sample(collector.replays, own))
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / args.per_repeat)
    if info.is_main:
        Path(args.result).write_text(json.dumps({"seconds_per_update_median": statistics.median(times), "times": times}))
    if info.enabled:
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="minatar")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (shared out between the ranks)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-repeat", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for n in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            command = [
                sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__, "--worker",
                "--suite", args.suite, "--threads", str(max(1, args.threads // n)), "--repeats", str(args.repeats),
                "--per-repeat", str(args.per_repeat), "--device", args.device, "--result", str(result),
            ]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // n))}
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            measured = json.loads(result.read_text())
        median = measured["seconds_per_update_median"]
        rows.append({"processes": n, "threads_per_process": max(1, args.threads // n), "seconds_per_update_median": median,
                     "updates_per_s": 1.0 / median, "times": measured["times"]})  # fmt: skip
        print(f"{args.suite}: {n} process(es) x {max(1, args.threads // n)} thread(s): {1.0 / median:.2f} updates/s ({1000 * median:.0f} ms/update)")
    base = rows[0]["updates_per_s"]
    for row in rows:
        row["speedup_vs_first"] = row["updates_per_s"] / base
    path = write_result(f"distributed_{args.suite}", {"suite": args.suite, "device": args.device, "results": rows})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
