"""MoE layer against independent references: a per-token loop, and the dense FFN it generalises."""

import pytest
import torch

from scalezero.model.moe import FeedForward, MoE


def _reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Route every token on its own, with plain Python loops."""
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        probs = torch.softmax(moe.router(x[n]), dim=-1)
        chosen = sorted(range(moe.num_experts), key=lambda e: -probs[e].item())[: moe.top_k]
        for e in chosen:
            out[n] += probs[e] * moe.experts[e](x[n : n + 1])[0]
        if moe.shared is not None:
            out[n] += moe.shared(x[n : n + 1])[0]
    return out


@pytest.mark.parametrize("experts, k, shared", [(4, 1, True), (4, 2, False), (8, 3, True), (3, 3, False)])
def test_matches_per_token_reference(experts, k, shared):
    torch.manual_seed(0)
    moe = MoE(16, experts, top_k=k, shared_expert=shared)
    x = torch.randn(2, 37, 16)
    y, info = moe(x)
    torch.testing.assert_close(y.reshape(-1, 16), _reference(moe, x.reshape(-1, 16)), rtol=1e-5, atol=1e-5)
    assert info.expert_index.shape == (74, k)
    assert info.load.sum().item() == pytest.approx(1.0)


def test_one_expert_top1_equals_dense_ffn():
    torch.manual_seed(1)
    moe = MoE(16, num_experts=1, top_k=1, shared_expert=False)
    dense = FeedForward(16)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(5, 9, 16)
    y, info = moe(x)
    torch.testing.assert_close(y, dense(x), rtol=1e-6, atol=1e-6)
    assert info.balance_loss.item() == pytest.approx(1.0)


def test_router_gets_gradient_from_output_and_balance_loss():
    torch.manual_seed(2)
    moe = MoE(16, num_experts=4, top_k=1)
    x = torch.randn(64, 16)
    y, info = moe(x)
    y.pow(2).mean().backward(retain_graph=True)
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    moe.zero_grad()
    (info.balance_loss + info.z_loss).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_balance_loss_is_one_when_balanced_and_larger_when_collapsed():
    moe = MoE(4, num_experts=4, top_k=1, shared_expert=False)
    with torch.no_grad():
        moe.router.weight.copy_(10 * torch.eye(4))
    _, balanced = moe(torch.eye(4).repeat(8, 1))  # each expert gets a quarter of tokens
    assert balanced.balance_loss.item() == pytest.approx(1.0, abs=1e-3)
    _, collapsed = moe(torch.eye(4)[:1].repeat(32, 1))  # all tokens to expert 0
    assert collapsed.balance_loss.item() == pytest.approx(4.0, abs=1e-2)
    assert collapsed.load.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_bad_top_k_is_rejected():
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, num_experts=2, top_k=3)


def test_moe_world_model_trains_and_caches_exactly():
    """An MoE world model: router losses reach the learner, and the cached search path still
    equals the full forward (routing is per token, so caching is unaffected)."""
    import numpy as np

    from scalezero.config import config_from_dict
    from scalezero.training.collector import Collector
    from scalezero.training.learner import Learner
    from scalezero.training.loop import build_model, resolve_tasks

    config = config_from_dict(
        {
            "tasks": ["cartpole", "minatar-breakout"],
            "model": {"embed_dim": 32, "num_layers": 2, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "moe_num_experts": 4, "moe_top_k": 2},
            "search": {"num_simulations": 4},
            "replay": {"unroll_steps": 2, "td_steps": 2},
            "train": {"num_envs": 4, "batch_size": 4, "context_steps": 2},
        }
    )
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(4):
        collector.step(model, [0, 1])
    learner = Learner(model, layout, config, torch.device("cpu"))
    router_before = [b.mlp.router.weight.detach().clone() for b in model.transformer.blocks]
    learner.update(learner.sample(collector.replays, [0, 1]))
    metrics = learner.update(learner.sample(collector.replays, [0, 1]))
    assert "loss/moe_balance" in metrics and np.isfinite(metrics["loss/moe_balance"])
    assert all(not torch.equal(a, b.mlp.router.weight) for a, b in zip(router_before, model.transformer.blocks))
    # Cached recurrent step == full-sequence forward with MoE blocks.
    model.eval()
    with torch.no_grad():
        latents = torch.randn(3, 3, 32).softmax(-1)
        actions = torch.tensor([[0, 1, 1], [1, 0, 2], [0, 0, 1]])
        task_ids = torch.tensor([0, 1, 1])
        root = model.initial_inference(latents, actions[:, :2], task_ids)
        step = model.recurrent_inference(root.cache, actions[:, 2], task_ids)
        seq = torch.cat([latents, step.next_latent.unsqueeze(1)], dim=1)
        full = model.forward_sequence(seq, torch.cat([actions, actions[:, :1]], dim=1), task_ids)
        torch.testing.assert_close(step.value_logits, full.value_logits[:, 3], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.reward_logits, full.reward_logits[:, 2], rtol=1e-5, atol=1e-5)


def test_expert_load_is_reported_per_task():
    import numpy as np

    from scalezero.model.moe import RouterInfo
    from scalezero.training.learner import expert_load_per_task

    # Two tasks, 2 tokens x top-1 each: task 3 -> experts [0, 0], task 5 -> [1, 2].
    info = RouterInfo(torch.tensor([[0], [0], [1], [2]]), torch.tensor(1.0), torch.tensor(0.0), torch.tensor([0.5, 0.25, 0.25]))
    load = expert_load_per_task([info], [3, 5], np.array([0, 1]))
    assert load["task3/moe/layer0/expert0"] == 1.0 and load["task3/moe/layer0/expert1"] == 0.0
    assert load["task5/moe/layer0/expert1"] == 0.5 and load["task5/moe/layer0/expert2"] == 0.5
