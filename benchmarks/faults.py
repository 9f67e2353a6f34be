"""Fault injection: SIGKILL one classic run at random moments, resume it every time, and check
that it ends exactly where the same run trained straight through ends.

    python benchmarks/faults.py --kills 20          # minutes on 2 CPU cores
    python benchmarks/faults.py --kills 3 --smoke  # a quick check of the pipeline

The run is the shipped ``classic`` suite (cartpole and acrobot in one model), shortened to
``--steps`` env steps per task with a checkpoint every ``--checkpoint-every`` steps and one
torch thread, so that it is bitwise repeatable. The straight run trains once; the faulty run
is killed ``--kills`` times, each a random 0 to ``--max-delay`` seconds after the (re)started
process wrote a new checkpoint (so it lands in collection, updates, evaluation or the next
checkpoint write alike; the checkpoint folders are inspected at each kill), and restarted with
``scalezero train --resume``. Compared: every logged loss, every evaluation (without its timing),
and the final networks and optimiser state. Writes ``benchmarks/results/faults.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_result

from scalezero.training.checkpoint import latest_checkpoint, list_checkpoints


def suite(steps: int, checkpoint_every: int, smoke: bool) -> dict:
    base = yaml.safe_load((ROOT / "scalezero" / "suites" / "classic.yaml").read_text())
    base["suite"] = "classic-faults"
    base["train"].update(
        {"env_steps": steps, "learning_starts": min(500, steps // 4), "eval_every": steps // 4, "eval_episodes": 4,
         "eval_max_steps": 200, "checkpoint_every": checkpoint_every, "keep_checkpoints": 2, "torch_threads": 1}
    )  # fmt: skip
    if smoke:
        base["model"].update({"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32})
        base["search"]["num_simulations"] = 4
        base["train"].update({"batch_size": 8})
    return base


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scalezero.cli", "train", *args, "--quiet"]


def timeless(rows: list[dict]) -> list[dict]:
    """Metrics rows without the fields that measure time."""
    return [{k: v for k, v in row.items() if not (k.endswith("_s") or k.startswith("time"))} for row in rows]


def same_run(a: Path, b: Path) -> dict[str, bool]:
    """Which parts of two finished runs are identical: losses, evaluations, final weights."""
    from safetensors.torch import load_file

    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    wa, wb = (load_file(str(latest_checkpoint(r) / "model.safetensors")) for r in (a, b))
    return {
        "losses": timeless(ma["train"]) == timeless(mb["train"]),
        "evaluations": timeless(ma["eval"]) == timeless(mb["eval"]),
        "weights_and_optimiser": wa.keys() == wb.keys() and all((wa[k] == wb[k]).all().item() for k in wa),
    }


def _newest(run: Path) -> int:
    found = list_checkpoints(run)
    return int(found[-1].name.removeprefix("ckpt_")) if found else -1


def faulty_run(suite_file: Path, run: Path, kills: int, max_delay: float, rng: random.Random) -> list[dict]:
    """Train into ``run``, SIGKILLed ``kills`` times; returns what each kill met. Each kill
    waits until the (re)started process has written a checkpoint newer than the one it started
    from (so the run always gets on), then a random 0 to ``max_delay`` seconds more."""
    events = []
    with open(run.parent / f"{run.name}.log", "w") as log:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(_command("--suite", str(suite_file), "--out", str(run), "--overwrite"), stderr=log)
        while True:
            start = _newest(run)
            while proc.poll() is None and _newest(run) <= start:
                time.sleep(0.02)
            delay = rng.uniform(0.0, max_delay)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            if proc.returncode is not None:  # the run finished (kills left over are reported as missing)
                if proc.returncode != 0:
                    raise RuntimeError(f"training failed (rc {proc.returncode}); see {log.name}")
                return events
            if len(events) >= kills:  # every kill done: let it finish
                proc.wait()
                continue
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            folder = run / "checkpoints"
            writing = sorted(p.name for p in folder.glob("*.tmp"))
            events.append({"after_checkpoint_s": round(delay, 2), "newest_checkpoint": list_checkpoints(run)[-1].name, "during_checkpoint_write": bool(writing)})
            print(f"kill {len(events):2d}/{kills} {delay:4.1f} s after a checkpoint: newest {events[-1]['newest_checkpoint']}, writing {writing or '-'}", flush=True)
            proc = subprocess.Popen(_command("--resume", str(run)), stderr=log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3000, help="env steps per task")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="env steps per task between checkpoints (each kill needs a new one)")
    parser.add_argument("--max-delay", type=float, default=4.0, help="longest wait (s) after a new checkpoint before a kill")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill times")
    parser.add_argument("--out", type=Path, default=Path("runs/faults"))
    parser.add_argument("--smoke", action="store_true", help="tiny model, for checking the pipeline")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    suite_file = args.out / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(suite(args.steps, args.checkpoint_every, args.smoke), sort_keys=False))
    straight, faulty = args.out / "straight", args.out / "faulty"
    start = time.perf_counter()
    subprocess.run(_command("--suite", str(suite_file), "--out", str(straight), "--overwrite"), check=True)
    straight_s = time.perf_counter() - start
    start = time.perf_counter()
    events = faulty_run(suite_file, faulty, args.kills, args.max_delay, random.Random(args.seed))
    faulty_s = time.perf_counter() - start
    equal = same_run(straight, faulty)
    summary = json.loads((faulty / "metrics.json").read_text())["summary"]
    result = {
        "kills": len(events),
        "kills_during_checkpoint_write": sum(e["during_checkpoint_write"] for e in events),
        "resumes_recorded": summary["robustness"]["resumes"],
        "identical": equal,
        "straight_wall_s": round(straight_s, 1),
        "faulty_wall_s": round(faulty_s, 1),
        "events": events,
        "settings": {"steps": args.steps, "checkpoint_every": args.checkpoint_every, "max_delay_s": args.max_delay, "smoke": args.smoke},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=1))
    if args.smoke:
        (args.out / "faults_smoke.json").write_text(json.dumps(result, indent=1))
    else:
        print("wrote", write_result("faults", result))
    if not all(equal.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
