"""No untrained contexts: every attention span that target computation and search use was
seen by a gradient in training.

Attention depends on the tokens a query sees and on their rotary distances. The online model
trains on windows of ``unroll_steps + 1`` steps; the target network reads ``K + n + 1``-step
windows for bootstrap values, and search attends over the root's context plus the path to
the leaf. Here the attention masks actually built in each phase are recorded, and the largest
query-to-key distance of target computation and of search must not exceed training's.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from scalezero.config import load_suite, with_overrides
from scalezero.model import transformer
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


class SpanRecorder:
    """Largest rotary distance ``q - k`` between a valid query and a key it may attend to, per phase."""

    def __init__(self) -> None:
        self.phase = "train"
        self.spans: dict[str, int] = {}

    def wrap(self, original):
        def mask_fn(q_pos, k_pos, k_valid, window_tokens, num_cached):
            mask = original(q_pos, k_pos, k_valid, window_tokens, num_cached)  # [B, 1, L, Lk]
            distance = q_pos.unsqueeze(-1) - k_pos.unsqueeze(-2)  # [B, L, Lk]
            seen = mask[:, 0] & k_valid.unsqueeze(-2)
            if seen.any():
                span = int(distance[seen].max())
                self.spans[self.phase] = max(self.spans.get(self.phase, 0), span)
            return mask

        return mask_fn

    @contextlib.contextmanager
    def during(self, phase: str):
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before


@pytest.mark.parametrize("overrides", [{}, {"context_steps": 8}], ids=["defaults", "long-context"])
def test_target_and_search_attend_only_over_trained_spans(monkeypatch, overrides) -> None:
    config = load_suite("cartpole")
    config = with_overrides(config, "model", embed_dim=32, num_heads=2, mlp_hidden=32)
    config = with_overrides(config, "search", num_simulations=32)  # deep trees
    config = with_overrides(config, "train", num_envs=4, batch_size=8, torch_threads=1, **overrides)
    torch.manual_seed(0)
    tasks, layout = resolve_tasks(config)
    device = torch.device("cpu")
    model = build_model(config, layout, device)
    collector = Collector(tasks, layout, config, device)
    learner = Learner(model, layout, config, device)
    recorder = SpanRecorder()
    monkeypatch.setattr(transformer, "attention_mask", recorder.wrap(transformer.attention_mask))
    target_values = learner.target.sequence_values

    def target_sequence(*args, **kwargs):
        with recorder.during("target"):
            return target_values(*args, **kwargs)

    learner.target.sequence_values = target_sequence
    with recorder.during("search"):
        for _ in range(30):
            collector.step(model, [0])
    with recorder.during("train"):
        learner.update(learner.sample(collector.replays, [0]))
    spans = recorder.spans
    assert set(spans) == {"train", "target", "search"}
    assert spans["target"] <= spans["train"], f"target computation attends over untrained spans: {spans}"
    assert spans["search"] <= spans["train"], f"search attends over untrained spans: {spans}"


def test_split_bootstraps_read_values_in_the_training_layout() -> None:
    """Spans are not the whole story with two layers: a token depends on one window further
    back per layer, so over the whole ``K + n + 1``-step window a late value still depends on
    steps the online model never sees before its own prediction. With
    ``replay.bootstrap_split`` the value bootstrapping target ``k`` (step ``n + k``) is read
    exactly as the online model reads its prediction ``k``: from steps ``n..n+k`` alone."""
    config = load_suite("cartpole")
    config = with_overrides(config, "model", embed_dim=32, num_heads=2, mlp_hidden=32, num_layers=2)
    torch.manual_seed(0)
    _, layout = resolve_tasks(config)
    device = torch.device("cpu")
    whole = Learner(build_model(config, layout, device), layout, config, device)
    split_config = with_overrides(config, "replay", bootstrap_split=True)
    split = Learner(build_model(split_config, layout, device), layout, split_config, device)
    with torch.no_grad():  # the value head starts at zero: give it weights that read the tokens
        for param in whole.target.heads.value.parameters():
            param.normal_(0.0, 0.3)
    split.target.load_state_dict(whole.target.state_dict())
    K, n = config.replay.unroll_steps, config.replay.td_steps
    length, dim = K + n + 1, config.model.embed_dim
    latents = torch.softmax(torch.randn(3, length, dim), dim=-1)
    actions = torch.randint(0, 2, (3, length))
    task_ids = torch.zeros(3, dtype=torch.long)
    earlier = latents.clone()
    earlier[:, : n - 1] = torch.softmax(torch.randn(3, n - 1, dim), dim=-1)  # steps before n - 1 only
    with torch.no_grad():
        reference = whole.target.sequence_values(latents[:, n : n + K + 1], actions[:, n : n + K + 1], task_ids)
        got = split._bootstrap_values(latents, actions, task_ids)
        assert reference.std() > 1e-3
        torch.testing.assert_close(got[:, n : n + K + 1], reference)
        torch.testing.assert_close(split._bootstrap_values(earlier, actions, task_ids)[:, n:], got[:, n:])
        # The whole window: step n + K is more than one attention window after step n - 2,
        # yet its value moves with it.
        moved = whole._bootstrap_values(earlier, actions, task_ids) - whole._bootstrap_values(latents, actions, task_ids)
        assert moved[:, n + K].abs().max() > 1e-6
