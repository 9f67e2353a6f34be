"""Staged LoRA: exact at zero-initialised adapters, merged == unmerged, the right parameters
train in each stage (and actually change), frozen weights never move, the cache stays exact."""

import numpy as np
import pytest
import torch

from scalezero.config import ConfigError, config_from_dict
from scalezero.model.lora import LoRALinear, lora_layers, merge_lora, set_stage
from scalezero.training.collector import Collector
from scalezero.training.dps import enter_stage
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


def test_zero_initialised_adapters_leave_the_layer_unchanged():
    torch.manual_seed(0)
    layer = LoRALinear(6, 5, num_stages=3, rank=2)
    x = torch.randn(4, 6)
    base = torch.nn.functional.linear(x, layer.weight, layer.bias)
    for stage in (0, 1, 2):
        layer.stage = stage
        torch.testing.assert_close(layer(x), base, rtol=0, atol=0)


def test_merged_equals_unmerged():
    torch.manual_seed(1)
    layer = LoRALinear(8, 7, num_stages=4, rank=3, alpha=6.0)
    with torch.no_grad():
        for b in layer.lora_B:
            b.normal_()
        layer.lora_scale_logits.normal_()
        layer.lora_base_scale_logit.fill_(0.7)
    x = torch.randn(10, 8)
    for stage in (1, 2, 3):
        layer.stage = stage
        torch.testing.assert_close(layer.merge()(x), layer(x), rtol=1e-5, atol=1e-5)
    a0, a = layer.scales()
    assert 0.8 <= float(a0.detach()) <= 1.2 and bool(((a >= 0.8) & (a <= 1.2)).all())


SMALL = {
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8,
              "moe_num_experts": 2, "lora_stages": 3, "lora_rank": 4},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {"num_envs": 4, "batch_size": 4, "context_steps": 2},
    "dps": {"enabled": True},
}  # fmt: skip


def _learner():
    config = config_from_dict(SMALL)
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(4):
        collector.step(model, [0, 1])
    return config, model, collector, Learner(model, layout, config, torch.device("cpu"))


def test_lora_targets_and_bad_values():
    _, model, _, _ = _learner()
    # One block: attention qkv + out, two routed experts and the shared expert (fc_in + fc_out each).
    assert len(lora_layers(model)) == 2 + 2 * 2 + 2
    assert model.parameter_breakdown()["adapters"] > 0
    with pytest.raises(ConfigError, match="model.lora_targets"):
        config_from_dict({**SMALL, "model": {**SMALL["model"], "lora_targets": ["heads"]}})


def test_merged_world_model_computes_the_same():
    config, model, _, _ = _learner()
    enter_stage(model, None, 2, config.dps)
    with torch.no_grad():
        for layer in lora_layers(model):
            for b in layer.lora_B:
                b.normal_(std=0.1)
    model.eval()
    latents = torch.randn(3, 3, 32).softmax(-1)
    actions = torch.tensor([[0, 1, 1], [1, 0, 2], [0, 0, 1]])
    task_ids = torch.tensor([0, 1, 1])
    with torch.no_grad():
        before = model.forward_sequence(latents, actions, task_ids).value_logits
        merge_lora(model)
        after = model.forward_sequence(latents, actions, task_ids).value_logits
    assert not lora_layers(model)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_stage_switch_trains_exactly_the_intended_parameters():
    config, model, collector, learner = _learner()
    in_optimizer = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in model.parameters())  # adapters too, though frozen at start
    learner.update(learner.sample(collector.replays, [0, 1]))  # stage 0: an ordinary update
    enter_stage(model, learner.target, 1, config.dps)
    for _ in range(2):  # stage 1 trains its adapter, so adapter 1 is non-zero when stage 2 begins
        learner.update(learner.sample(collector.replays, [0, 1]))
    enter_stage(model, learner.target, 2, config.dps)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    for n in named:
        if not n.startswith("transformer."):
            assert n in trainable, n  # encoders, heads, embeddings keep training (dps.freeze_* off)
        elif "lora_A.1" in n or "lora_B.1" in n or "scale_logit" in n:
            assert n in trainable, n  # the stage-2 adapter, its scale, the earlier scales and a0
        else:
            assert n not in trainable, n  # base weights, norms, router, stage-1 adapter
    assert not any(p.requires_grad for p in learner.target.parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    # Two updates: B starts at zero, so A and the new adapter's scale get gradient from the second on.
    for _ in range(2):
        learner.update(learner.sample(collector.replays, [0, 1]))
    changed = {n for n, p in named.items() if not torch.equal(p, before[n])}
    for n in named:
        if n.startswith("transformer.") and n not in trainable:
            assert n not in changed, f"frozen {n} moved"
        routed = ".experts." in n  # a routed expert may receive no token in a small batch
        if ("lora_A.1" in n or "lora_B.1" in n or "base_scale_logit" in n) and not routed:
            assert n in changed, f"{n} did not train"
    assert any(".experts." in n and "lora_B.1" in n for n in changed)
    scales = [n for n in named if n.endswith("lora_scale_logits") and ".experts." not in n]
    for n in scales:  # a_1 (adapter 1 is frozen but its scale trains) and a_2 both move; a_3 does not exist
        assert named[n][0] != before[n][0] and named[n][1] != before[n][1], n


def test_search_cache_stays_exact_in_a_lora_stage():
    config, model, _, _ = _learner()
    enter_stage(model, None, 1, config.dps)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B[0].normal_(std=0.1)
    model.eval()
    latents = torch.randn(2, 3, 32).softmax(-1)
    actions = torch.tensor([[0, 1, 1], [1, 0, 2]])
    task_ids = torch.tensor([0, 1])
    with torch.no_grad():
        root = model.initial_inference(latents, actions[:, :2], task_ids)
        step = model.recurrent_inference(root.cache, actions[:, 2], task_ids)
        seq = torch.cat([latents, step.next_latent.unsqueeze(1)], dim=1)
        full = model.forward_sequence(seq, torch.cat([actions, actions[:, :1]], dim=1), task_ids)
    torch.testing.assert_close(step.value_logits, full.value_logits[:, 3], rtol=1e-5, atol=1e-5)


def test_set_stage_rejects_a_stage_beyond_the_adapters():
    layer = torch.nn.Sequential(LoRALinear(3, 3, num_stages=2))
    with pytest.raises(ValueError, match="stage 2 out of range"):
        set_stage(layer, 2)
    np.testing.assert_equal(layer[0].stage, 0)
