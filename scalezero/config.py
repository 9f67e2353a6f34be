"""Typed run configuration: frozen dataclasses, YAML suites, validation.

A run is described by one :class:`Config`. Every field has a documented default;
suites (YAML files shipped in ``scalezero/suites``) overlay a few of them and list the
tasks. Unknown keys and out-of-range values fail at load time with a message that
names the field and what is allowed, so a typo never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which field and what is allowed."""


def _check(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r} is not allowed; expected {allowed}")


LORA_TARGETS = ("attention", "experts", "ffn")
LATENT_NORMS = ("simnorm", "layernorm")
SUPPORT_TARGETS = ("two_hot", "hl_gauss", "two_hot_scalar")


@dataclass(frozen=True)
class ModelConfig:
    """World-model size and shape (UniZero-style transformer over latent/action tokens)."""

    embed_dim: int = 128
    """Width of every token; also the latent size every encoder maps into."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads; must divide ``embed_dim``."""
    dropout: float = 0.0
    """Dropout inside the transformer, in the online network's training passes only: search,
    evaluation and the target network run without it (UniZero uses 0.1)."""
    attention_window_steps: int = 0
    """How many (latent, action) steps a token may attend back over; 0: the training window,
    ``replay.unroll_steps + 1`` (the most allowed). Training, target computation and search all
    use this sliding window; because it fits inside the training window, every context length
    and rotary distance that target computation (``K + n + 1`` steps) and search (context plus
    any depth) attend over was seen by a gradient, and rotary positions make dropping keys
    older than the window exact. This holds per layer; with several layers a token depends on
    steps up to ``num_layers`` windows back (see ``replay.bootstrap_split``)."""
    latent_norm: str = "simnorm"
    """Normalisation every latent ends in (encoders and the next-latent head): ``simnorm``
    (softmax over groups of ``simnorm_group``, TD-MPC2 / UniZero) or ``layernorm``. The latent
    enters the transformer as it is (plus the task embedding). The next-latent loss is the
    squared error summed over the latent for SimNorm (each group contributes at most 2) and
    averaged over it for LayerNorm (each feature has unit variance), so both start near 1."""
    simnorm_group: int = 8
    """Group size of SimNorm on latents (softmax over groups); must divide ``embed_dim``."""
    support_size: int = 50
    """Reward and value are categorical over 2*support_size+1 bins of the transformed scalar."""
    support_scale: float = 1.0
    """Spacing of those bins in the transformed space: bins at ``support_scale * (-support_size..support_size)``.
    Below 1, small returns spread over more bins (a reward of 1 is 0.42 in the transformed
    space: with spacing 1 it shares bins 0 and 1 with every value up to 2.4); the largest
    representable scalar shrinks with it (``Support.max_scalar``)."""
    support_target: str = "two_hot"
    """Targets of the reward and value cross-entropies: ``two_hot`` (the scalar split between its
    two neighbouring bins, MuZero) or ``hl_gauss`` (the mass of a Gaussian around it on every
    bin, ``support_sigma`` bins wide: HL-Gauss, "Stop Regressing", Farebrother et al. 2024) or
    ``two_hot_scalar`` (split between the two neighbouring bins by distance in the scalar's own
    units, read out as the expected bin value, as DreamerV3 does). The first two read a
    prediction out as ``h^-1`` of the expected transformed value, which lies below the mean of
    the targets whenever they vary (``h^-1`` is convex for positive values) and compounds
    through bootstrapped n-step targets; ``two_hot_scalar`` reads out the mean itself."""
    support_sigma: float = 0.75
    """Standard deviation of the ``hl_gauss`` targets, in bin widths (0.75: the paper's choice)."""
    conv_channels: int = 32
    """Channels of the image encoder's convolutions."""
    conv_max_spatial: int = 8
    """The image encoder halves its grid (stride-2 convolutions) while its height or width is
    above this, then flattens. 8 turns MinAtar's 10x10 grid into 5x5 and a 64x64 Atari frame
    into 8x8; 10 keeps MinAtar's grid whole (every object's exact cell reaches the Linear, like
    MinAtar's own DQN network, at 4x the flattened width)."""
    mlp_hidden: int = 128
    """Hidden width of the vector encoder and of the heads."""
    task_embedding: bool = True
    """Add a learned per-task embedding to every token."""
    moe_num_experts: int = 0
    """Routed experts in every feed-forward block (0: a dense FFN, no routing)."""
    moe_top_k: int = 1
    """Experts each token is routed to (1 <= k <= moe_num_experts)."""
    moe_shared_expert: bool = True
    """Add an always-on shared expert beside the routed ones."""
    task_embedding_max_norm: float = 0.0
    """Rescale each task embedding to at most this L2 norm in the forward pass (EZ-M's max-norm
    task embeddings; 0: no limit)."""
    consistency_head: bool = False
    """Add the SimSiam projector and predictor used by ``train.temporal_consistency_weight``."""
    lora_stages: int = 1
    """Dynamic Parameter Scaling stages S: stage 0 trains the base model, each later stage a
    new LoRA adapter on the frozen base (1: no adapters)."""
    lora_rank: int = 8
    """Rank r of every LoRA adapter."""
    lora_alpha: float = 16.0
    """LoRA scaling alpha (the adapter update is scaled by alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (training only)."""
    lora_scale_bound: float = 0.2
    """Each adapter's learnable scale, and the base weight's, stays within 1 ± this bound."""
    lora_targets: tuple[str, ...] = ("attention", "experts", "ffn")
    """Linears that get adapters: ``attention`` (q/k/v/out projections), ``experts`` (routed MoE
    experts), ``ffn`` (dense feed-forward blocks and the shared expert)."""
    policy_init_std: float = 0.5
    """Continuous tasks: standard deviation (before the tanh squash) of the Gaussian policy at
    initialisation; the learned scale stays within exp([-5, 1])."""

    def validate(self) -> None:
        _check(self.embed_dim >= 8, "model.embed_dim", "an integer >= 8", self.embed_dim)
        _check(self.num_layers >= 1, "model.num_layers", "an integer >= 1", self.num_layers)
        _check(
            self.num_heads >= 1 and self.embed_dim % self.num_heads == 0 and (self.embed_dim // self.num_heads) % 2 == 0,
            "model.num_heads",
            f"a divisor of embed_dim={self.embed_dim} leaving an even head width",
            self.num_heads,
        )
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "a float in [0, 1)", self.dropout)
        _check(self.attention_window_steps >= 0, "model.attention_window_steps", "an integer >= 0 (0: unroll_steps + 1)", self.attention_window_steps)
        _check(self.latent_norm in LATENT_NORMS, "model.latent_norm", f"one of {LATENT_NORMS}", self.latent_norm)
        _check(
            self.simnorm_group >= 2 and self.embed_dim % self.simnorm_group == 0,
            "model.simnorm_group",
            f"an integer >= 2 dividing embed_dim={self.embed_dim}",
            self.simnorm_group,
        )
        _check(self.support_size >= 1, "model.support_size", "an integer >= 1", self.support_size)
        _check(self.support_scale > 0, "model.support_scale", "a float > 0", self.support_scale)
        _check(self.support_target in SUPPORT_TARGETS, "model.support_target", f"one of {SUPPORT_TARGETS}", self.support_target)
        _check(self.support_sigma > 0, "model.support_sigma", "a float > 0 (in bin widths)", self.support_sigma)
        _check(self.conv_channels >= 1, "model.conv_channels", "an integer >= 1", self.conv_channels)
        _check(self.conv_max_spatial >= 1, "model.conv_max_spatial", "an integer >= 1", self.conv_max_spatial)
        _check(self.mlp_hidden >= 1, "model.mlp_hidden", "an integer >= 1", self.mlp_hidden)
        _check(self.moe_num_experts >= 0, "model.moe_num_experts", "an integer >= 0 (0: dense FFN)", self.moe_num_experts)
        _check(self.task_embedding_max_norm >= 0, "model.task_embedding_max_norm", "a float >= 0 (0: no limit)", self.task_embedding_max_norm)
        _check(self.lora_stages >= 1, "model.lora_stages", "an integer >= 1 (1: no adapters)", self.lora_stages)
        _check(self.lora_rank >= 1, "model.lora_rank", "an integer >= 1", self.lora_rank)
        _check(self.lora_alpha > 0, "model.lora_alpha", "a float > 0", self.lora_alpha)
        _check(0.0 <= self.lora_dropout < 1.0, "model.lora_dropout", "a float in [0, 1)", self.lora_dropout)
        _check(0.0 <= self.lora_scale_bound < 1.0, "model.lora_scale_bound", "a float in [0, 1)", self.lora_scale_bound)
        _check(0.0068 < self.policy_init_std < 2.71, "model.policy_init_std", "a float in (exp(-5), exp(1))", self.policy_init_std)
        for target in self.lora_targets:
            _check(target in LORA_TARGETS, "model.lora_targets", f"a list drawn from {LORA_TARGETS}", list(self.lora_targets))
        if self.moe_num_experts > 0:
            _check(
                1 <= self.moe_top_k <= self.moe_num_experts,
                "model.moe_top_k",
                f"an integer in [1, moe_num_experts={self.moe_num_experts}]",
                self.moe_top_k,
            )


SEARCH_ALGORITHMS = ("puct", "gumbel")


def _anneal(start: float, end: float, progress: float, span: float) -> float:
    """``start`` moved linearly to ``end`` over the first ``span`` of the budget, then ``end``."""
    frac = min(max(progress / span, 0.0), 1.0)
    return start + frac * (end - start)

EPSILON_MAX_REPEAT = 100
"""Longest repeat of one random action in temporally extended epsilon-greedy collection."""


@dataclass(frozen=True)
class SearchConfig:
    """Monte Carlo Tree Search inside the learned model."""

    algorithm: str = "puct"
    """``puct`` (MuZero: pUCT with Dirichlet root noise) or ``gumbel`` (Gumbel MuZero root:
    sequential halving, improved-policy target)."""
    num_simulations: int = 25
    """Model evaluations per search (one new node each)."""
    pb_c_init: float = 1.25
    """pUCT exploration constant c1."""
    pb_c_base: float = 19652.0
    """pUCT visit-scaling constant c2."""
    dirichlet_alpha: float = 0.3
    """Root noise concentration (pUCT, collection only)."""
    root_noise_weight: float = 0.25
    """Mixing weight of the root noise (0 disables it)."""
    gumbel_max_considered: int = 16
    """Gumbel root: actions kept at the start of sequential halving."""
    gumbel_scale: float = 1.0
    """Gumbel root: scale of the Gumbel noise in collection (0 in evaluation)."""
    c_visit: float = 50.0
    """Gumbel: sigma(q) = (c_visit + max_b N(b)) * c_scale * q."""
    c_scale: float = 0.1
    """Gumbel: see ``c_visit``."""
    collect_temperature: float = 0.25
    """Temperature applied to visit counts when sampling actions in collection (pUCT), at the
    start of training."""
    collect_temperature_final: float = 0.0
    """Temperature at the end of ``temperature_anneal`` (0: no annealing, ``collect_temperature``
    throughout). Collection starts broad and sharpens as the model becomes worth trusting."""
    temperature_anneal: float = 0.5
    """Fraction of ``train.env_steps`` over which the collection temperature moves linearly
    from ``collect_temperature`` to ``collect_temperature_final`` (then stays there)."""
    collect_epsilon: float = 0.0
    """Discrete tasks, collection only: probability that a step plays a uniformly random legal
    action instead of the search's choice, at the start of training (0: never). The stored
    policy target stays the search's; only the action played (and stored) changes. Gives
    sparse-reward games data the search alone would not collect (LightZero's
    ``eps_greedy_exploration_in_collect``)."""
    collect_epsilon_final: float = 0.0
    """The random-action probability at the end of ``epsilon_anneal`` (then kept)."""
    epsilon_anneal: float = 0.25
    """Fraction of ``train.env_steps`` over which the random-action probability moves linearly
    from ``collect_epsilon`` to ``collect_epsilon_final``."""
    epsilon_zeta: float = 0.0
    """0: each random action lasts one step. Above 1: temporally extended epsilon-greedy
    (Dabney et al., 2021): a random action, once drawn, is repeated for ``n`` steps with
    ``P(n) ~ n ** -epsilon_zeta`` (at most ``EPSILON_MAX_REPEAT``), while it stays legal and
    the episode lasts; the chance to start one is the random-action probability. Repeats reach
    states that single random steps almost never do (a chicken crossing Freeway)."""
    num_samples: int = 8
    """Continuous tasks (Sampled MuZero): actions drawn from the policy at every node; the
    search chooses among them."""
    sample_mode_action: bool = True
    """Continuous tasks: the first of each node's candidates is the policy's squashed mean
    instead of a random draw, so the greedy action is always considered."""
    root_sample_std_scale: float = 1.0
    """Continuous tasks, collection only: the root's draws use the policy's spread times this
    (more than 1 explores more widely)."""

    def temperature_at(self, progress: float) -> float:
        """Collection temperature after ``progress`` (0 to 1) of the env-step budget."""
        if self.collect_temperature_final <= 0:
            return self.collect_temperature
        return _anneal(self.collect_temperature, self.collect_temperature_final, progress, self.temperature_anneal)

    def epsilon_at(self, progress: float) -> float:
        """Random-action probability in collection after ``progress`` (0 to 1) of the budget."""
        return _anneal(self.collect_epsilon, self.collect_epsilon_final, progress, self.epsilon_anneal)

    def validate(self) -> None:
        _check(self.algorithm in SEARCH_ALGORITHMS, "search.algorithm", f"one of {SEARCH_ALGORITHMS}", self.algorithm)
        _check(self.num_simulations >= 1, "search.num_simulations", "an integer >= 1", self.num_simulations)
        _check(self.pb_c_init > 0, "search.pb_c_init", "a float > 0", self.pb_c_init)
        _check(self.pb_c_base > 0, "search.pb_c_base", "a float > 0", self.pb_c_base)
        _check(self.dirichlet_alpha > 0, "search.dirichlet_alpha", "a float > 0", self.dirichlet_alpha)
        _check(0 <= self.root_noise_weight <= 1, "search.root_noise_weight", "a float in [0, 1]", self.root_noise_weight)
        _check(self.gumbel_max_considered >= 1, "search.gumbel_max_considered", "an integer >= 1", self.gumbel_max_considered)
        _check(self.gumbel_scale >= 0, "search.gumbel_scale", "a float >= 0", self.gumbel_scale)
        _check(self.c_visit > 0, "search.c_visit", "a float > 0", self.c_visit)
        _check(self.c_scale > 0, "search.c_scale", "a float > 0", self.c_scale)
        _check(self.collect_temperature > 0, "search.collect_temperature", "a float > 0", self.collect_temperature)
        _check(self.collect_temperature_final >= 0, "search.collect_temperature_final", "a float >= 0 (0: no annealing)", self.collect_temperature_final)
        _check(0 < self.temperature_anneal <= 1, "search.temperature_anneal", "a float in (0, 1]", self.temperature_anneal)
        _check(0 <= self.collect_epsilon <= 1, "search.collect_epsilon", "a probability in [0, 1]", self.collect_epsilon)
        _check(0 <= self.collect_epsilon_final <= 1, "search.collect_epsilon_final", "a probability in [0, 1]", self.collect_epsilon_final)
        _check(0 < self.epsilon_anneal <= 1, "search.epsilon_anneal", "a float in (0, 1]", self.epsilon_anneal)
        _check(self.epsilon_zeta == 0 or self.epsilon_zeta > 1, "search.epsilon_zeta", "0 (one-step random actions) or a float > 1", self.epsilon_zeta)
        _check(self.num_samples >= 2, "search.num_samples", "an integer >= 2", self.num_samples)
        _check(self.root_sample_std_scale > 0, "search.root_sample_std_scale", "a float > 0", self.root_sample_std_scale)


@dataclass(frozen=True)
class ReplayConfig:
    """Per-task replay buffers and the windows the learner trains on."""

    capacity_per_task: int = 100_000
    """Steps kept per task (oldest dropped first)."""
    unroll_steps: int = 5
    """K: each sample is a window of K+1 observations and K actions."""
    td_steps: int = 5
    """n: value targets sum n discounted rewards, then bootstrap from the target network."""
    td_age_steps: int = 0
    """Off-policy correction (EfficientZero): a window's n-step horizon shrinks by one for every
    ``td_age_steps`` env steps of its task collected since the window was stored (down to one
    step), so old data, gathered by older and more random policies, hands over to the target
    network's value sooner; 0: every window uses ``td_steps``."""
    bootstrap_split: bool = False
    """Compute the target network's bootstrap values over pieces of ``unroll_steps + 1`` steps,
    one of them starting at step ``td_steps`` (so the value bootstrapping target ``k`` is read
    with the context of ``k`` steps that the online prediction ``k`` has), instead of over the
    whole ``unroll_steps + td_steps + 1``-step window at once. With more than one layer the
    sliding attention window does not bound what a token depends on (each layer reaches one
    window further back), so values read late in the whole window come from contexts the
    online value head never trained on; the pieces read every value in a layout it did."""
    reanalyse_fraction: float = 0.0
    """Fraction of every task's learner windows whose policy targets are recomputed at sample
    time by one batched search of the target network, from the same context the actor had
    (MuZero Reanalyse); 0: the targets stored at collection."""
    reanalyse_values: bool = False
    """Reanalysed windows also bootstrap their value targets from the fresh search's root
    values instead of the target network's raw values (about twice the searches)."""
    priority_alpha: float = 0.0
    """Prioritized replay: windows start at a step with probability proportional to its
    priority ** alpha, the priority being the learner's latest |value target - predicted
    value| there (new steps: the largest stored); 0: uniform (EfficientZero uses 0.6)."""
    priority_beta: float = 0.4
    """Importance-weight exponent of prioritized replay: each window's losses are weighted by
    (N P) ** -beta over the batch's largest (1: corrects the draw's bias fully)."""

    def validate(self) -> None:
        _check(self.priority_alpha >= 0.0, "replay.priority_alpha", "a float >= 0 (0: uniform replay)", self.priority_alpha)
        _check(0.0 <= self.priority_beta <= 1.0, "replay.priority_beta", "a float in [0, 1]", self.priority_beta)
        _check(self.capacity_per_task >= 100, "replay.capacity_per_task", "an integer >= 100", self.capacity_per_task)
        _check(0.0 <= self.reanalyse_fraction <= 1.0, "replay.reanalyse_fraction", "a float in [0, 1]", self.reanalyse_fraction)
        _check(self.unroll_steps >= 1, "replay.unroll_steps", "an integer >= 1", self.unroll_steps)
        _check(self.td_steps >= 1, "replay.td_steps", "an integer >= 1", self.td_steps)
        _check(self.td_age_steps >= 0, "replay.td_age_steps", "an integer >= 0 (0: no off-policy correction)", self.td_age_steps)


DEVICES = ("cpu", "cuda")
TASK_WEIGHTINGS = ("uniform", "difficulty")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: budget, optimiser, loss weights, evaluation, logging."""

    env_steps: int = 20_000
    """Environment steps per task (the budget; agent steps, not emulator frames)."""
    num_envs: int = 8
    """Environment copies stepped together per task in collection."""
    batch_size: int = 64
    """Samples per task in every learner batch."""
    replay_ratio: float = 0.25
    """Learner updates per environment step of one task. Every update draws ``batch_size``
    windows from each task, so each task's data is reused at the same rate whatever the
    suite's size."""
    learning_starts: int = 1_000
    """Environment steps per task collected before the first update."""
    context_steps: int = 4
    """Past (observation, action) steps given to the model at the root of each search."""
    discount: float = 0.997
    """Reward discount gamma."""
    lr: float = 3e-4
    """AdamW learning rate (at the first update; see ``lr_final_fraction``)."""
    lr_final_fraction: float = 1.0
    """The learning rate falls linearly from ``lr`` at ``learning_starts`` to ``lr *
    lr_final_fraction`` at the end of the env-step budget (1: constant). A high rate learns
    fast early; a lower one at the end leaves a less noisy final model."""
    weight_decay: float = 1e-4
    """AdamW weight decay (matrices only; biases, norms and embeddings are not decayed)."""
    grad_clip: float = 5.0
    """Global gradient-norm clip."""
    target_tau: float = 0.05
    """Target network EMA rate: target <- (1 - tau) target + tau online, every update."""
    latent_weight: float = 10.0
    """Weight of the next-latent consistency loss."""
    reward_weight: float = 1.0
    """Weight of the reward cross-entropy."""
    value_weight: float = 0.5
    """Weight of the value cross-entropy."""
    policy_weight: float = 1.0
    """Weight of the policy cross-entropy against the search policy."""
    entropy_weight: float = 1e-4
    """Weight of the policy-entropy bonus (subtracted from the loss)."""
    temporal_consistency_weight: float = 0.0
    """Weight of EZ-M's temporal consistency loss: SimSiam cosine between the projected
    predicted next latent and the projected encoded next observation (needs
    ``model.consistency_head: true``)."""
    path_consistency_weight: float = 0.0
    """Weight of EZ-M's path consistency loss: the model's own value at step t should equal its
    reward plus the discounted value at step t+1, compared in h-transformed units."""
    imagined_weight: float = 0.0
    """Weight of the reward, value and policy losses (each with its own weight) taken a second
    time on the model's own predicted latents: every observation after a window's first is
    replaced by its one-step prediction, as search feeds them to the heads, and the same targets
    apply (MuZero trains its heads only on predicted states; teacher forcing never does). Costs
    one more transformer pass per update; 0: off."""
    augment_shift: int = 0
    """Random-shift augmentation of image observations in learner batches (DrQ, as EfficientZero
    and BBF train Atari): each window moves by up to this many cells or pixels in each
    direction, the same at every step of the window, zeros shifted in; vector and text
    observations are left alone. 0: off."""
    reset_every: int = 0
    """Every this many learner updates, restore the network's plasticity (shrink and perturb,
    as in SR-SPR and BBF): the value, reward and policy heads start again from a fresh
    initialisation, every other weight becomes ``reset_keep`` of itself plus ``1 - reset_keep``
    of a fresh one, and the optimiser's moments are cleared. The target network is not reset,
    but it keeps following the online one at ``target_tau`` (halfway to the reset network in
    about ``0.7 / target_tau`` updates) unless ``reset_target_hold`` holds it. Aimed at a
    learner that fits its replay far better than fresh data. 0: off."""
    reset_keep: float = 0.5
    """Share of each non-head weight kept at a reset (``reset_every``); 0: a full re-initialisation."""
    reset_target_hold: int = 0
    """Learner updates after each reset during which the target network stays as it was at
    the reset, so bootstrap values and next-latent targets come from the trained network
    while the reset one relearns (then it follows at ``target_tau`` again); 0: no hold."""
    moe_balance_weight: float = 0.01
    """Weight of the MoE load-balancing loss (mean over layers; used when experts exist)."""
    moe_z_weight: float = 0.0
    """Weight of the MoE router z-loss (mean over layers)."""
    task_weighting: str = "uniform"
    """How per-task losses combine: ``uniform`` (their mean) or ``difficulty`` (a weighted mean
    favouring tasks whose recent training return is far from their target, see
    ``scalezero.training.weighting``)."""
    difficulty_temperature: float = 1.0
    """Softmax temperature of the difficulty weights (smaller: sharper; large: uniform)."""
    conflict_every: int = 0
    """Measure gradient conflict between tasks every this many updates (0: off; one extra
    backward pass per task each time, cheap at 100)."""
    cluster_every: int = 0
    """Re-cluster tasks by their gradients on shared weights every this many updates (MoW; 0:
    off). With MoE layers each cluster then routes only to its own share of the experts."""
    num_clusters: int = 2
    """At most this many task clusters (tasks whose gradients conflict are never merged)."""
    eval_every: int = 5_000
    """Evaluate every this many environment steps per task (and at the end)."""
    eval_episodes: int = 10
    """Greedy evaluation episodes per task."""
    eval_max_steps: int = 0
    """Cap on one evaluation episode's length (counted as truncated); 0: the task's own limit,
    so episodes run to the game's own end."""
    checkpoint_every: int = 10_000
    """Checkpoint every this many environment steps per task (and at the end, and on SIGINT/SIGTERM)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep (older ones are deleted)."""
    max_nonfinite_updates: int = 10
    """Updates whose loss or gradient is NaN/inf are skipped; after this many in a row the
    model and optimiser roll back to the last checkpoint."""
    env_step_timeout_s: float = 60.0
    """An env copy whose step or reset takes longer is restarted (episode truncated); 0: no limit."""
    seed: int = 0
    """Seed of every random generator of the run."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    torch_threads: int = 0
    """Intra-op CPU threads for torch (0: use all cores; with ``overlap``, half of them for
    each of its two threads)."""
    background_eval: bool = False
    """Evaluate in a second process while training goes on (``scalezero.training.background_eval``):
    the figures are those of the weights at each evaluation point, taken at the next point;
    the last evaluation is the loop's own. Built-in and installed tasks only; one process."""
    novelty_bonus: float = 0.0
    """Count-based exploration: collection stores ``reward + novelty_bonus / sqrt(n)`` for a
    step that arrives in an observation seen ``n`` times in the run (counted per task, by a
    hash of the observation; ``scalezero.training.novelty``). For games whose reward lies at
    the end of a long sequence (text games); evaluation and the logs report the env's own
    returns. 0: off."""
    novelty_centered: bool = False
    """Subtract a running mean from the novelty bonus, so that it pays only for arriving
    somewhere rarer than usual and ending an episode (finishing a quest) forfeits nothing on
    average; with the plain bonus the agent can learn to stay in play. (At a bonus of 0.3 it
    still did on TextWorld: BENCHMARKS.md; the bonus's spread, not its mean, outweighed the
    score.)"""
    overlap: bool = False
    """Collect and learn at the same time: a worker thread applies the updates owed for the
    data so far while the collector steps with a copy of the model refreshed after every step
    (``scalezero.training.overlap``). Same replay ratio; an update misses only the collection
    step running beside it. Deterministic, but not the same run as without it."""

    def lr_at(self, env_steps: float) -> float:
        """Learning rate once ``env_steps`` per task are collected (the linear fall of
        ``lr_final_fraction`` from ``learning_starts`` to ``env_steps``, the budget)."""
        span = max(self.env_steps - self.learning_starts, 1)
        return _anneal(self.lr, self.lr * self.lr_final_fraction, env_steps - self.learning_starts, span)

    def validate(self) -> None:
        _check(self.env_steps >= 1, "train.env_steps", "an integer >= 1", self.env_steps)
        _check(self.num_envs >= 1, "train.num_envs", "an integer >= 1", self.num_envs)
        _check(self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        _check(self.replay_ratio > 0, "train.replay_ratio", "a float > 0", self.replay_ratio)
        _check(self.learning_starts >= 0, "train.learning_starts", "an integer >= 0", self.learning_starts)
        _check(self.context_steps >= 0, "train.context_steps", "an integer >= 0", self.context_steps)
        _check(0 < self.discount <= 1, "train.discount", "a float in (0, 1]", self.discount)
        _check(self.lr > 0, "train.lr", "a float > 0", self.lr)
        _check(self.novelty_bonus >= 0, "train.novelty_bonus", "a float >= 0 (0: off)", self.novelty_bonus)
        _check(self.novelty_bonus > 0 or not self.novelty_centered, "train.novelty_centered", "false while train.novelty_bonus is 0", self.novelty_centered)
        _check(0 < self.lr_final_fraction <= 1, "train.lr_final_fraction", "a float in (0, 1] (1: constant rate)", self.lr_final_fraction)
        _check(self.weight_decay >= 0, "train.weight_decay", "a float >= 0", self.weight_decay)
        _check(self.grad_clip > 0, "train.grad_clip", "a float > 0", self.grad_clip)
        _check(0 < self.target_tau <= 1, "train.target_tau", "a float in (0, 1]", self.target_tau)
        for name in ("latent_weight", "reward_weight", "value_weight", "policy_weight", "entropy_weight", "temporal_consistency_weight", "path_consistency_weight", "imagined_weight", "moe_balance_weight", "moe_z_weight"):
            value = getattr(self, name)
            _check(value >= 0, f"train.{name}", "a float >= 0", value)
        _check(self.augment_shift >= 0, "train.augment_shift", "an integer >= 0 (0: off)", self.augment_shift)
        _check(self.reset_every >= 0, "train.reset_every", "an integer >= 0 (0: off)", self.reset_every)
        _check(0 <= self.reset_keep < 1, "train.reset_keep", "a float in [0, 1)", self.reset_keep)
        _check(
            self.reset_target_hold >= 0 and (self.reset_every == 0 or self.reset_target_hold < self.reset_every),
            "train.reset_target_hold",
            "an integer >= 0 and below train.reset_every",
            self.reset_target_hold,
        )
        _check(self.task_weighting in TASK_WEIGHTINGS, "train.task_weighting", f"one of {TASK_WEIGHTINGS}", self.task_weighting)
        _check(self.difficulty_temperature > 0, "train.difficulty_temperature", "a float > 0", self.difficulty_temperature)
        _check(self.conflict_every >= 0, "train.conflict_every", "an integer >= 0 (0: off)", self.conflict_every)
        _check(self.cluster_every >= 0, "train.cluster_every", "an integer >= 0 (0: off)", self.cluster_every)
        _check(self.num_clusters >= 1, "train.num_clusters", "an integer >= 1", self.num_clusters)
        _check(self.eval_every >= 1, "train.eval_every", "an integer >= 1", self.eval_every)
        _check(self.eval_episodes >= 1, "train.eval_episodes", "an integer >= 1", self.eval_episodes)
        _check(self.eval_max_steps >= 0, "train.eval_max_steps", "an integer >= 0 (0: the task's own limit)", self.eval_max_steps)
        _check(self.checkpoint_every >= 1, "train.checkpoint_every", "an integer >= 1", self.checkpoint_every)
        _check(self.keep_checkpoints >= 1, "train.keep_checkpoints", "an integer >= 1", self.keep_checkpoints)
        _check(self.max_nonfinite_updates >= 1, "train.max_nonfinite_updates", "an integer >= 1", self.max_nonfinite_updates)
        _check(self.env_step_timeout_s >= 0, "train.env_step_timeout_s", "a float >= 0 (0: no limit)", self.env_step_timeout_s)
        _check(self.device in DEVICES, "train.device", f"one of {DEVICES}", self.device)
        _check(self.torch_threads >= 0, "train.torch_threads", "an integer >= 0", self.torch_threads)
        _check(0 <= self.seed < 2**32, "train.seed", "an integer in [0, 2**32)", self.seed)


@dataclass(frozen=True)
class DPSConfig:
    """Dynamic Parameter Scaling: solved tasks leave training; LoRA stages add capacity."""

    enabled: bool = False
    """Turn the controller on. Tasks whose evaluation return reaches their target stop
    collecting and leave learner batches (they are still evaluated); with
    ``model.lora_stages > 1`` the model also moves through LoRA stages."""
    min_stage0_updates: int = 1_000
    """Stage 0 (the whole model trains) lasts at least this many learner updates."""
    max_stage_updates: int = 1_000
    """A stage ends after this many updates even if too few tasks were solved in it (for stage
    0 the clock starts once ``min_stage0_updates`` have passed)."""
    reopen_below: float = 0.0
    """A solved task rejoins training when its evaluation progress (0 = random return,
    1 = target) falls below this fraction (0: solved tasks never rejoin)."""
    freeze_encoders: bool = False
    """From stage 1 on, also freeze the observation encoders."""
    freeze_heads: bool = False
    """From stage 1 on, also freeze the prediction heads."""

    def validate(self) -> None:
        _check(self.min_stage0_updates >= 0, "dps.min_stage0_updates", "an integer >= 0", self.min_stage0_updates)
        _check(self.max_stage_updates >= 1, "dps.max_stage_updates", "an integer >= 1", self.max_stage_updates)
        _check(0.0 <= self.reopen_below < 1.0, "dps.reopen_below", "a float in [0, 1)", self.reopen_below)


@dataclass(frozen=True)
class TaskEntry:
    """One task of a suite: a registered task by name, or your own Gymnasium env by
    ``entry_point`` (see ``scalezero.tasks.gymnasium_task``)."""

    name: str
    """Registered task name (``scalezero.tasks.available_tasks()`` lists them), or any new
    name for a task given by ``entry_point``."""
    target_return: float | None = None
    """Evaluation return at which the task counts as solved (None: the task's default;
    required with ``entry_point``)."""
    batch_size: int | None = None
    """Windows of this task in every learner batch (None: ``train.batch_size``, i.e. balanced)."""
    entry_point: str | None = None
    """Your env: ``path/to/file.py:Factory`` (relative to the suite file), ``package.module:Factory``
    or a registered Gymnasium id. ``Factory(**kwargs)`` must return a Gymnasium env."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``entry_point``'s factory, or the options a built-in task takes
    (``jericho-*``: ``game_dir``, the folder of the game files)."""
    random_return: float | None = None
    """Mean return of a uniformly random policy, where known (reports, difficulty weighting)."""
    max_episode_steps: int | None = None
    """Episode cap of an ``entry_point`` task (None: the env's own TimeLimit, if any)."""
    action_bins: int = 5
    """A continuous (Box) action space of an ``entry_point`` task: 0 keeps it continuous
    (sampled search); n >= 2 discretises it into n values per dimension."""

    def validate(self) -> None:
        from scalezero.tasks import available_tasks

        names = available_tasks()
        where = f"tasks[{self.name}]"
        _check(self.batch_size is None or self.batch_size >= 1, f"{where}.batch_size", "an integer >= 1 or null", self.batch_size)
        if self.entry_point is None:
            if self.name not in names:
                from scalezero.tasks import unknown_task_message

                raise ConfigError(f"tasks[].name: {unknown_task_message(self.name)}; or give an entry_point for your own env")
            from scalezero.tasks import get_task

            options = get_task(self.name).options
            unknown = sorted(set(self.kwargs) - set(options))
            allowed = f"keys drawn from {list(options)}" if options else "empty (this task takes no options) without an entry_point"
            _check(not unknown, f"{where}.kwargs", allowed, self.kwargs)
            return
        _check(self.name not in names, f"{where}.name", "a name that is not a built-in task when entry_point is given", self.name)
        _check(self.target_return is not None, f"{where}.target_return", "a number (required with entry_point)", self.target_return)
        _check(self.action_bins == 0 or self.action_bins >= 2, f"{where}.action_bins", "0 (continuous) or an integer >= 2", self.action_bins)
        _check(self.max_episode_steps is None or self.max_episode_steps >= 1, f"{where}.max_episode_steps", "an integer >= 1 or null", self.max_episode_steps)
        from scalezero.tasks.gymnasium_task import TaskDefinitionError, cached_gymnasium_task

        try:
            cached_gymnasium_task(self)
        except TaskDefinitionError as exc:
            raise ConfigError(f"{where}.entry_point: {exc}") from None


@dataclass(frozen=True)
class Config:
    """Everything a run needs. ``tasks`` is the suite; a single task is a suite of one."""

    tasks: tuple[TaskEntry, ...] = ()
    """The suite's tasks (at least one)."""
    suite: str = "custom"
    """Name of the suite the tasks came from (for reports)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dps: DPSConfig = field(default_factory=DPSConfig)

    def validate(self) -> Config:
        """Check every field; return self so calls can chain."""
        _check(len(self.tasks) >= 1, "tasks", "a list of at least one task", list(self.tasks))
        names = [t.name for t in self.tasks]
        _check(len(set(names)) == len(names), "tasks", "distinct task names", names)
        for task in self.tasks:
            task.validate()
        self.model.validate()
        self.search.validate()
        self.replay.validate()
        self.train.validate()
        self.dps.validate()
        _check(
            self.model.attention_window_steps <= self.replay.unroll_steps + 1,
            "model.attention_window_steps",
            f"an integer <= replay.unroll_steps + 1 = {self.replay.unroll_steps + 1} (target computation and search must not "
            "attend over spans that training windows never cover)",
            self.model.attention_window_steps,
        )
        _check(
            self.train.temporal_consistency_weight == 0 or self.model.consistency_head,
            "train.temporal_consistency_weight",
            "0 unless model.consistency_head is true (the loss needs its projector)",
            self.train.temporal_consistency_weight,
        )
        _check(
            self.train.reset_every == 0 or self.model.lora_stages == 1,
            "train.reset_every",
            "0 when model.lora_stages > 1 (a reset would re-initialise frozen base weights under the adapters)",
            self.train.reset_every,
        )
        return self

    def resolved_model(self) -> ModelConfig:
        """The model section with derived values filled in (an attention window of 0 becomes
        the training window ``replay.unroll_steps + 1``): what the world model is built from."""
        window = self.model.attention_window_steps or self.replay.unroll_steps + 1
        return dataclasses.replace(self.model, attention_window_steps=window)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved configuration (for benchmark records)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _build(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path or 'config'}; allowed: {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{path}.{key}" if path else key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if is_dataclass(hint):
        return _build(hint, value, path)
    if origin is tuple:
        (item,) = get_args(hint)[:1]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    args = get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text: take the number it spells
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{path} must be a number, got the text {value!r} (YAML numbers look like 0.5, 1.0e-4 or 3)") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    return value


def _task_entry(item: Any, path: str) -> dict:
    return {"name": item} if isinstance(item, str) else item


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested mapping (as read from YAML)."""
    data = dict(data)
    if "tasks" in data and isinstance(data["tasks"], list):
        data["tasks"] = [_task_entry(t, f"tasks[{i}]") for i, t in enumerate(data["tasks"])]
    return _build(Config, data, "").validate()


def available_suites() -> list[str]:
    """Names of the suites shipped with the package."""
    folder = resources.files("scalezero") / "suites"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


SECTIONS = ("tasks", "suite", "model", "search", "replay", "train", "dps")


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in file ``path``; a file that is missing, binary, not YAML or not a
    mapping of sections is refused with one line naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (expected YAML)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of sections ({', '.join(SECTIONS)}), got a {type(data).__name__}")
    return data


def load_suite(name: str) -> Config:
    """Load a shipped suite by name, or a suite YAML file by path."""
    path = Path(name)
    if name in available_suites() and not path.is_file():
        data = yaml.safe_load((resources.files("scalezero") / "suites" / f"{name}.yaml").read_text()) or {}
        data.setdefault("suite", name)
        return config_from_dict(data)
    if not path.is_file() and path.suffix not in (".yaml", ".yml") and os.sep not in name and "/" not in name:
        from scalezero.errors import did_you_mean

        suites = available_suites()
        hint = did_you_mean(name, suites, limit=3)
        raise ConfigError(f"unknown suite {name!r}; {hint}available suites: {', '.join(suites)} (or a path to a .yaml file)")
    data = _read_mapping(path, "suite file")
    data.setdefault("suite", path.stem)
    for item in data.get("tasks") or []:  # file entry points are relative to the suite file
        entry = item.get("entry_point") if isinstance(item, dict) else None
        if isinstance(entry, str) and ".py:" in entry and not Path(entry).is_absolute():
            item["entry_point"] = str((path.parent / entry).resolve())
    return config_from_dict(data)


def load_config(path: str | Path) -> Config:
    """Load a resolved run configuration (``config.yaml`` of a run directory)."""
    return config_from_dict(_read_mapping(Path(path), "run config"))


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically: several processes may write it)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, path)


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """Return a copy of ``config`` with fields of one section replaced, validated."""
    data = config.to_dict()
    if section not in data or not isinstance(data[section], dict):
        raise ConfigError(f"unknown config section {section!r}; allowed: model, search, replay, train, dps")
    data[section].update(values)
    return config_from_dict(data)
