"""Benchmark plumbing: finished runs are archived and reused; results of earlier seeds combine."""

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import common
import multitask


def _metrics(returns: dict[str, float], params: int = 10, wall: float = 1.0) -> dict:
    final = {g: {"return_mean": r} for g, r in returns.items()}
    train = [{"conflict/all/fraction_negative": 0.5, "conflict/all/mean_cosine": 0.1}] * 2
    return {"summary": {"final_eval": final, "parameters": params, "wall_s": wall}, "eval": [], "train": train}


def test_archived_runs_are_reused_without_training(tmp_path, monkeypatch):
    suite = {"tasks": [{"name": "cartpole"}], "train": {"env_steps": 10}}
    run = common.run_path(tmp_path / "runs", "x", suite, 3)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_metrics({"cartpole": 7.0})))
    archive = tmp_path / "archive"
    path = common.archive_run(run, archive, commit="abc1234")
    stored = json.loads(path.read_text())
    assert stored["commit"] == "abc1234" and stored["run"] == run.name
    # The run directory is gone (another machine, another day): the archive answers.
    (run / "metrics.json").unlink()
    monkeypatch.setattr(common.subprocess, "Popen", lambda *a, **k: pytest.fail("an archived run must not train again"))
    assert common.run_training("x", suite, 3, tmp_path / "runs", archive) == run
    assert common.run_metrics(run, archive)["summary"]["final_eval"]["cartpole"]["return_mean"] == 7.0
    with pytest.raises(FileNotFoundError, match=run.name):
        common.run_metrics(run, None)
    # A changed configuration is a different run: it is not found in the archive.
    assert common.run_path(tmp_path / "runs", "x", {**suite, "train": {"env_steps": 11}}, 3).name != run.name


def test_stopping_a_benchmark_stops_its_trainings(tmp_path, monkeypatch):
    # A stand-in training: a process that would run for a minute, registered as run_training does.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(common, "_TRAININGS", {proc})
    monkeypatch.setattr(common, "_STOPPING", threading.Event())
    with pytest.raises(SystemExit) as stopped:
        common.stop_trainings(signal.SIGTERM)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert proc.poll() is not None  # ended, not orphaned
    # The runner's queued jobs do not start once it is stopping.
    with pytest.raises(RuntimeError, match="not started, the benchmark is stopping"):
        common.run_training("x", {"tasks": [{"name": "cartpole"}], "train": {"env_steps": 10}}, 0, tmp_path / "runs")
    assert common._TRAININGS == {proc}  # nothing new was started


def test_a_failed_training_raises_with_its_exit_code(tmp_path, monkeypatch):
    suite = {"tasks": [{"name": "cartpole"}], "train": {"env_steps": 10}}
    real_popen = subprocess.Popen
    monkeypatch.setattr(common.subprocess, "Popen", lambda args, **k: real_popen([sys.executable, "-c", "raise SystemExit(3)"], **k))
    with pytest.raises(subprocess.CalledProcessError) as failed:
        common.run_training("x", suite, 0, tmp_path / "runs")
    assert failed.value.returncode == 3 and not common._TRAININGS


def test_archive_names_the_commit_the_run_started_with(tmp_path):
    run = tmp_path / "runs" / "x-0-s0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_metrics({"cartpole": 1.0})))
    (run / "commit.txt").write_text("1111111")  # HEAD moved on while the run trained
    stored = json.loads(common.archive_run(run, tmp_path / "archive").read_text())
    assert stored["commit"] == "1111111"


def test_multitask_combines_earlier_seeds():
    games = ["minatar-breakout", "minatar-freeway"]
    runs = {f"single-{g.removeprefix('minatar-')}": [_metrics({g: 2.0})] for g in games}
    runs["dense"] = [_metrics({"minatar-breakout": 1.0, "minatar-freeway": 1.0})]
    runs["moe"] = [_metrics({"minatar-breakout": 3.0, "minatar-freeway": 2.0}, params=20)]
    earlier = multitask.summarise({k: [_metrics({g: 0.0 for g in v[0]["summary"]["final_eval"]}, v[0]["summary"]["parameters"])] for k, v in runs.items()})
    earlier["variants"]["single-breakout"]["returns"]["minatar-breakout"] = [4.0]
    combined = multitask.summarise(runs, earlier)
    assert combined["variants"]["moe"]["returns"]["minatar-breakout"] == [0.0, 3.0]
    assert len(combined["variants"]["dense"]["conflict"]) == 2
    table = combined["normalised_by_single_task"]
    # breakout: MoE mean 1.5 over single-task mean 3.0; freeway: 1.0 over 1.0
    assert table["moe"]["normalised"] == pytest.approx({"minatar-breakout": 0.5, "minatar-freeway": 1.0})
    assert table["moe"]["mean_normalised"] == pytest.approx(0.75)
    assert table["single"]["mean_normalised"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not the same agent"):
        runs["moe"][0]["summary"]["parameters"] = 21
        multitask.summarise(runs, earlier)


@pytest.mark.parametrize("experts", [0, 3])
def test_conflict_groups_partition_the_transformer(experts):
    import conflict
    import torch

    from scalezero.config import config_from_dict
    from scalezero.training.loop import build_model, resolve_tasks

    config = config_from_dict({"tasks": ["cartpole", "acrobot"], "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "moe_num_experts": experts}})
    model = build_model(config, resolve_tasks(config)[1], torch.device("cpu"))
    groups = {g: {id(p) for p in ps} for g, ps in conflict.parameter_groups(model).items()}
    assert groups["attention"] and groups["ffn"]
    assert groups["attention"] | groups["ffn"] == groups["all"] and not groups["attention"] & groups["ffn"]
    assert groups["routed"] <= groups["ffn"] and bool(groups["routed"]) == bool(experts)
    routed = sum(p.numel() for p in model.parameters() if id(p) in groups["routed"])
    assert routed == sum(p.numel() for m in model.modules() if hasattr(m, "experts") for p in m.experts.parameters())


def test_routing_overlap_by_hand():
    rows = [{"task0/moe/layer0/expert0": 1.0, "task0/moe/layer0/expert1": 0.0, "task1/moe/layer0/expert0": 0.25, "task1/moe/layer0/expert1": 0.75}] * 2
    routing = multitask._routing_summary([{"loss/total": 1.0}, *rows])
    assert routing["load"]["task1"]["layer0"] == [0.25, 0.75]
    assert routing["overlap"] == pytest.approx(0.25)  # min(1, .25) + min(0, .75)
    assert multitask._routing_summary([{"loss/total": 1.0}]) is None


def test_run_archive_is_not_ignored_by_git():
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    probe = common.ARCHIVE.relative_to(root) / "any-run-s0.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=root, check=False)
    assert ignored.returncode == 1, f"{probe} is ignored: archived benchmark runs would never be committed"


def test_dps_curves_and_solve_and_leave_bound_by_hand():
    import dps

    specs = {"a": (0.0, 1.0), "b": (0.0, 2.0)}
    rows = [(10, "a", 1.5), (10, "b", 0.5), (20, "a", 0.5), (20, "b", 1.0), (30, "a", 0.8), (30, "b", 2.0)]
    metrics = {"eval": [{"env_steps": s, "task": g, "return_mean": r} for s, g, r in rows]}
    # Plain run: both games train all the time; scores are capped at 1.
    assert [x for point in dps.score_curve(metrics, specs) for x in point] == pytest.approx([20, 0.625, 40, 0.5, 60, 0.9])
    # Game a reaches its target at the first evaluation, leaves training and counts as solved:
    # 10 steps each before it, then only b trains (10 steps per evaluation).
    assert [x for point in dps.oracle_curve(metrics, specs) for x in point] == pytest.approx([20, 0.625, 30, 0.75, 40, 1.0])
    summary = {"final_eval": {g: {"return_mean": 1.0} for g in specs}, "env_steps_total": 60, "env_steps_per_task": {}, "wall_s": 1.0}
    # A DPS run that left game a after the first evaluation and then tracked the plain run.
    dps_rows = [{**row, "env_steps_total": {10: 20, 20: 30, 30: 40}[row["env_steps"]]} for row in metrics["eval"]]
    runs = {"moe": [{**metrics, "summary": summary}], "moe-dps": [{"eval": dps_rows, "summary": {**summary, "env_steps_total": 40}}]}
    result = dps.summarise(runs, {"moe-dps": specs})
    c = result["comparisons"]["moe-dps"]
    assert c["reference_score"] == pytest.approx(0.9)
    assert c["agents"]["moe"]["steps_to_reference"] == 60 and c["agents"]["moe-dps"]["steps_to_reference"] == 40
    assert c["dps_steps_fraction"] == pytest.approx(40 / 60)
    assert c["oracle"]["steps_to_reference"] == 40 and c["oracle"]["steps_fraction"] == pytest.approx(40 / 60)
    assert result["runs"]["moe-dps"]["env_steps_total"] == [40]
    table = dps.markdown_table(result)
    assert "| env steps to S* = 0.900 (moe-dps's targets) | 60 | 40 |" in table and "**67%** (bound 67%)" in table
    # Targets halved: the plain run reaches its final score 1.0 at its second evaluation (40 steps);
    # game b (returns 0.5, 1.0, 2.0 against 1.0) is solved there too, after a left at the first.
    halved = result["oracle_by_target_scale"][0.5]
    assert halved["reference_score"] == pytest.approx(1.0)
    assert halved["steps_to_reference"] == 30 and halved["steps_fraction"] == pytest.approx(30 / 40)


def test_dps_settings_keep_their_runs_and_targets():
    import dps

    table = dps.variants(20_000)
    # A changed configuration trains new runs under new names: these pin the settings. (Runs archived
    # before MinAtar evaluations ran to the games' own end, capped at 1,000 steps, are moe-08029611,
    # moe-dps-a683898e and moe-dps-tuned-8a63c3f9; those of the pUCT root, before the minatar suite
    # took the Gumbel root, are moe-56c8bb17, moe-dps-b9dfbee0 and moe-dps-tuned-e2fb3374.)
    assert common.run_path(Path("runs"), "moe", table["moe"], 1).name == "moe-f7fb888f-s1"
    assert common.run_path(Path("runs"), "moe-dps", table["moe-dps"], 1).name == "moe-dps-be1900cc-s1"
    assert common.run_path(Path("runs"), "moe-dps-tuned", table["moe-dps-tuned"], 1).name == "moe-dps-tuned-100d5367-s1"
    assert table["moe-dps-reopen"]["dps"] == {**table["moe-dps-tuned"]["dps"], "reopen_below": 0.5}
    tuned = {t["name"]: t["target_return"] for t in table["moe-dps-tuned"]["tasks"]}
    for game, (low, target) in dps.targets(0.75).items():
        assert tuned[game] == target and low < target < common.CPU_TARGETS[game]


def test_ablations_cluster_history_and_table_by_hand():
    import ablations

    games = ["minatar-breakout", "minatar-freeway", "minatar-seaquest"]
    train = [
        {"updates": 1, "loss/total": 1.0, "loss/value": 0.5, "task0/cluster": 0.0, "task1/cluster": 1.0, "task2/cluster": 0.0},
        {"updates": 50, "loss/total": 1.0, "loss/value": 0.3},
        {"updates": 501, "loss/total": 1.0, "loss/value": 0.1, "task0/cluster": 0.0, "task1/cluster": 0.0, "task2/cluster": 1.0},
    ]
    finals = {"minatar-breakout": 3.0, "minatar-freeway": 11.0, "minatar-seaquest": 0.0}
    metrics = {
        "summary": {"env_steps_per_task": dict.fromkeys(games, 10), "final_eval": {g: {"return_mean": r} for g, r in finals.items()}, "wall_s": 5.0},
        "train": train,
        "eval": [{"env_steps": 10, "task": g, "return_mean": r} for g, r in finals.items()],
    }
    history = ablations.cluster_history(metrics)
    assert history == [(1, [["breakout", "seaquest"], ["freeway"]]), (501, [["breakout", "freeway"], ["seaquest"]])]
    # Breakout at its target (1), freeway 11 times its target (capped to 1), seaquest at random.
    low = common.target_scores({"minatar-seaquest": 0.0})["minatar-seaquest"]
    assert ablations.capped_mean(finals) == pytest.approx((1 + 1 + min(1.0, low)) / 3)
    result = ablations.summarise({"moe+clustering": [metrics]})
    assert result["variants"]["moe+clustering"]["late_losses"] == [{"total": 1.0, "value": pytest.approx(0.3)}]
    assert result["variants"]["moe+clustering"]["mean_capped"] == [pytest.approx(ablations.capped_mean(finals))]
    table = ablations.markdown_table(result)
    assert "| final clusters per seed | breakout+freeway / seaquest (2 clusterings, 1 changes) |" in table
    assert "| loss/value, last 10 logged updates | 0.300 (0.300) |" in table


def test_cartpole_comparison_scores_first_solve_hold_and_wall_ratio():
    import cartpole_vs_lightzero as cp

    def curve(points):  # (env steps, wall seconds, mean return)
        return [{"env_steps": s, "wall_s": w, "train_wall_s": w / 2, "return_mean": r} for s, w, r in points]

    ours = {
        0: curve([(1000, 10, 50), (2000, 20, 196), (3000, 30, 189), (4000, 40, 200)]),
        1: curve([(1000, 10, 195), (2000, 20, 200)]),
        2: curve([(1000, 10, 20), (5000, 50, 199)]),
    }
    lightzero = {0: curve([(3000, 90, 200)]), 1: curve([(3000, 60, 100)]), 2: curve([(2000, 30, 197)])}
    result = cp.summarise({"ours": ours}, lightzero)
    seed0 = result["per_seed"]["ours"][0]
    assert (seed0["first_solved_env_steps"], seed0["min_after_first"], seed0["held_190"]) == (2000, 189, False)
    assert result["per_seed"]["ours"][1]["held_190"] and not result["per_seed"]["ours"][2]["solved_by_4000"]
    targets = result["targets"]
    assert not targets["ours"]["solved_by_4000_every_seed"] and not targets["ours"]["held_190_every_seed"]
    # Medians over seeds, a seed that never solved counting as slowest: ours 20 s, LightZero 90 s.
    assert targets["ours"]["median_wall_to_195_s"] == 20 and targets["lightzero"]["median_wall_to_195_s"] == 90
    assert targets["ours"]["wall_ratio_to_lightzero"] == round(20 / 90, 3)


def test_minatar_single_scores_policy_loss_against_log_actions():
    import math

    import minatar_single

    def run(game, ret, losses):
        return {"summary": {"final_eval": {game: {"return_mean": ret}}, "wall_s": 5.0}, "eval": [], "train": [{"loss/policy": x} for x in losses]}

    runs = {
        "single-breakout": [run("minatar-breakout", 12.0, [1.0] * 9 + [0.7]), run("minatar-breakout", 10.0, [0.8] * 10)],
        "single-freeway": [run("minatar-freeway", 9.0, [0.5]), run("minatar-freeway", 12.0, [0.5])],
    }
    result = minatar_single.summarise(runs)
    breakout, freeway = result["games"]["minatar-breakout"], result["games"]["minatar-freeway"]
    assert breakout["return_target"] == 2 * minatar_single.BEFORE["minatar-breakout"] and freeway["return_target"] == 10.0
    assert breakout["policy_loss"] == [0.7, 0.8]  # the last tenth of the logged points
    assert breakout["policy_loss_over_log_actions"][1] == pytest.approx(0.8 / math.log(3))
    # 0.8 / log 3 = 0.73 and 0.5 / log 3 = 0.46: every game within 0.75 log|A|.
    assert result["targets"]["policy_loss_at_most_0.75_log_actions"]
    assert result["targets"]["returns_at_least_target"] == {"minatar-breakout": True, "minatar-freeway": True}


def test_minatar_single_probe_changes_only_what_it_names_and_its_run_names():
    import minatar_single

    from scalezero.cli import parse_overrides

    protocol = minatar_single.variants(20_000)
    probe = minatar_single.variants(20_000, probe=parse_overrides(["train.replay_ratio=2.0", "train.reset_every=10000"]))
    for name, suite in protocol.items():
        changed = probe[name]
        assert changed["train"] == {**suite["train"], "replay_ratio": 2.0, "reset_every": 10000}
        assert {k: v for k, v in changed.items() if k != "train"} == {k: v for k, v in suite.items() if k != "train"}
        # Probe runs are archived beside the protocol's, never under the same name.
        assert common.run_path(Path("r"), name, changed, 2) != common.run_path(Path("r"), name, suite, 2)
    # No probe: the protocol's archived runs are still found by their names.
    assert minatar_single.variants(20_000, probe={}) == protocol
    # Only the grid's seeds without a probe write the grid's file.
    overrides = parse_overrides(["train.reset_every=10000"])
    assert minatar_single.result_name({}, [2, 3]) == "minatar_single"
    assert minatar_single.result_name({}, [4, 5]) == "minatar_single_seeds4-5"
    assert minatar_single.result_name(overrides, [2, 3]) == "minatar_single_reset_every10000"
    assert minatar_single.result_name(overrides, [4]) == "minatar_single_reset_every10000_seeds4"


def test_late_losses_average_the_end_of_training():
    rows = [{"loss/policy": float(i), "loss/value": 10.0 * i} for i in range(20)] + [{"grad_norm": 1.0}]
    metrics = {"train": rows}
    assert common.late_losses(metrics) == {"policy": 18.5, "value": 185.0}  # the last tenth: rows 18, 19
    assert common.late_losses(metrics, last=4) == {"policy": 17.5, "value": 175.0}
    assert common.late_losses({"train": [{"grad_norm": 1.0}]}) == {}


def test_step_profile_rows_add_up_to_the_wall_time():
    import step_profile

    p = step_profile.profile_suite("cartpole", 120)
    rows = p["seconds"]
    assert abs(sum(rows.values()) - p["wall_s"]) < 1e-6
    assert all(s >= -1e-3 for s in rows.values()), rows  # nested timers never exceed their parent
    assert rows["collect: search network calls"] > 0 and rows["learner: backward"] > 0 and rows["evaluation"] > 0
    assert p["calls"]["collect/env"] >= 120 // 8 and p["calls"]["evaluate"] == 1 and p["updates"] > 0
    assert "| learner: backward |" in step_profile.markdown(p)


def test_op_ceiling_counts_flops_of_a_linear_layer_by_hand():
    import op_ceiling
    import torch

    layer = torch.nn.Linear(48, 32)
    x = torch.randn(20, 48, requires_grad=True)
    calls = op_ceiling.record(lambda: layer(x).sum().backward())
    ceiling = op_ceiling.replay(calls, repeats=1, min_seconds=0.0)
    # forward addmm 2*20*48*32; backward: grad of input and of weight, each a product of the same size
    assert ceiling.flops == 3 * 2 * 20 * 48 * 32
    assert ceiling.by_op["addmm"]["calls"] == 1 and ceiling.by_op["mm"]["calls"] == 2
    assert ceiling.seconds > 0 and ceiling.flops_per_s > 0


def test_op_ceiling_counts_cpu_attention_by_hand():
    import op_ceiling
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    calls = op_ceiling.record(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    ceiling = op_ceiling.replay(calls, repeats=1, min_seconds=0.0)
    forward = 4 * 2 * 3 * 5 * 5 * 8  # q k^T and p v
    assert ceiling.flops == forward * (1 + 2.5)


def test_search_quality_copies_minatar_states_and_scores_by_hand(tmp_path):
    """An env copy continues exactly like its original (same seed, same actions); returns are
    discounted by hand; the within-state correlation skips states with nothing to rank; and
    the whole measurement runs on a tiny trained run."""
    import search_quality as sq

    from scalezero.tasks.minatar import MinAtarEnv
    from scalezero.training.loop import train

    env = MinAtarEnv("breakout", seed=3)
    env.reset()
    for a in (1, 2, 0, 1):
        env.step(a)
    one, two = sq.copy_game(env, 11), sq.copy_game(env, 11)
    for a in [0, 1, 2, 2, 1, 0, 0, 2] * 4:
        first, second = one.step(a), two.step(a)
        assert np.array_equal(first[0], second[0]) and first[1:] == second[1:]
        if first[2]:
            break
    assert sq.discounted_returns([1.0, 0.0, 2.0], 0.5) == pytest.approx([1.5, 1.0, 2.0])
    predicted = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [3.0, 2.0, 1.0]])
    actual = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert sq.within_state_corr(predicted, actual) == pytest.approx(0.0)  # +1 and -1; the constant row left out

    from scalezero.config import config_from_dict

    suite = {
        "tasks": ["minatar-breakout"],
        "model": common.SMOKE_MODEL,
        "search": {"algorithm": "gumbel", "num_simulations": 4},
        "train": {"env_steps": 64, "num_envs": 4, "batch_size": 4, "learning_starts": 32, "eval_every": 64, "eval_episodes": 1, "torch_threads": 1},
    }
    run = train(config_from_dict(suite), tmp_path / "run", show_progress=False).run_dir
    result = sq.measure(run, None, states=3, rollouts=2, horizon=4, episodes=2, seed=0)
    values = result["action_values"]
    assert values["states"] == 3 and result["prior"]["episodes"] == 2
    assert values["mc_q_best_action"] >= max(values["mc_q_of_choice"].values()) - 1e-9
    assert values["mc_q_best_action"] >= values["mc_q_mean_over_actions"]
