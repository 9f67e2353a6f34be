"""Reports: two seeds of a tiny MoE run with the conflict diagnostic give a self-contained HTML
page whose every image is a real, non-empty PNG, and Markdown whose images exist."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from scalezero.cli import main
from scalezero.config import config_from_dict
from scalezero.report import write_report
from scalezero.training.loop import train

TINY_MOE = {
    "suite": "tiny-moe",
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "moe_num_experts": 3},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {"env_steps": 100, "num_envs": 4, "batch_size": 4, "learning_starts": 40, "replay_ratio": 1.0, "eval_every": 50,
              "eval_episodes": 2, "eval_max_steps": 20, "checkpoint_every": 100, "conflict_every": 5},
}  # fmt: skip


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for seed in (0, 1):
        data = {**TINY_MOE, "train": {**TINY_MOE["train"], "seed": seed}}
        train(config_from_dict(data), root / f"moe-s{seed}", show_progress=False)
        runs.append(root / f"moe-s{seed}")
    return runs


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.headings, self._in_h2 = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_html_report_is_self_contained_with_real_images(two_seeds, tmp_path):
    html = write_report(two_seeds, out=tmp_path / "report")
    parser = _Images()
    parser.feed(html.read_text())
    assert {"Runs", "Final evaluation", "Learning curves", "Mixture-of-Experts: expert load per task", "Gradient conflict between tasks",
            "Dynamic Parameter Scaling", "Throughput"} <= set(parser.headings)  # fmt: skip
    assert len(parser.sources) >= 5  # curves, losses, expert heatmap, conflict, throughput
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,"), src[:40]
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    text = html.read_text()
    assert "(s.e., 2 seeds)" in text and "mean pairwise cosine" in text


def test_markdown_images_exist_and_cli_writes_both(two_seeds, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", "--run", str(two_seeds[0]), "--run", str(two_seeds[1]), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "expert_load.png" in images and "gradient_conflict.png" in images
    for name in images:
        assert (out / name).stat().st_size > 5000, name
    # A table row per task and seed-aggregated setting, and the normalised mean.
    assert re.search(r"\| minatar-breakout \| moe \| -?\d+\.\d\d ± ", md)
    assert "| mean over tasks | moe |" in md


def test_report_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "nope")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no Chromium on this machine")
def test_report_renders_in_headless_chromium(two_seeds, tmp_path):
    html = write_report(two_seeds[0], out=tmp_path / "one")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,3000", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000  # a rendered page with plots, not a blank one


def test_report_counts_distinct_seeds_and_caps_the_random_reference(two_seeds, tmp_path):
    import json

    from scalezero.tasks import get_task
    from scalezero.training.evaluator import random_policy_returns

    copy = tmp_path / "moe-s0-copy"
    shutil.copytree(two_seeds[0], copy)  # the same seed again: not a third seed
    md = write_report([*two_seeds, copy], out=tmp_path / "report").with_suffix(".md").read_text()
    assert "(s.e., 2 seeds)" in md and "3 seeds" not in md
    assert "moe-s0-copy" in md  # shown on its own
    # Evaluation episodes are cut at 20 steps: the random policy is measured with the same cut,
    # not taken from cartpole's 500-step reference (22).
    capped = float(random_policy_returns(get_task("cartpole"), 32, 20).mean())
    assert capped <= 20 < get_task("cartpole").spec.random_return
    refs = json.loads((tmp_path / "report" / "random_references.json").read_text())
    assert refs["cartpole@20"] == pytest.approx(capped)
    rows = [line for line in md.splitlines() if line.startswith("| cartpole |")]
    assert rows and all(f"| {capped:.2f} |" in row for row in rows)
