#!/usr/bin/env bash
# DeepMind Control, the 18 state tasks of the usual benchmark, one model, one GPU: the `dmc18`
# suite (scalezero/suites/dmc18.yaml).
#
#   bash benchmarks/gpu_dmc18.sh            # train (or resume) runs/dmc18, then write its report
#   SEED=1 OUT=runs/dmc18-s1 bash benchmarks/gpu_dmc18.sh
#
# Protocol (scalezero/tasks/dmc.py): flattened state observations (3 to 24 floats, padded to 24),
# actions in [-1, 1]^d (1 to 6 dims, padded to 6 and masked per task), action repeat 4 for
# cartpole, cheetah, ball_in_cup and reacher and 2 for the others, so an episode is 250 or 500
# agent steps; returns in [0, 1000]. Sampled MuZero search: 50 simulations, K = 20 policy draws.
#
# Budget: 200,000 agent steps per task (3.6 M in all; 400,000 to 800,000 control steps per task),
# 50,000 learner updates of 18 x 64 windows, a model of width 256 with 4 layers and 8 routed
# experts + 1 shared (top-1); ten evaluations of 8 whole episodes per task (every 20,000 steps).
#
# Machine: one GPU with >= 24 GB (H100 class is plenty) and >= 16 GB of host memory (replay of
# 3.6 M vector steps: ~1 GB), ~5 GB of free disk in runs/ (checkpoints keep the replay).
# Expected wall time: about 3 to 5 hours on one H100. This is an estimate, not a measurement:
# 25,000 batched searches over 144 roots at 50 simulations, 50,000 updates, ~10 M MuJoCo control
# steps on the CPU. The run prints its throughput, and metrics.json records wall_s and
# env_steps_per_s.
#
# Interrupted (Ctrl-C, SIGTERM, a lost machine)? Run this script again: it resumes from the
# newest intact checkpoint (every 20,000 steps per task).
#
# Needs: .venv with a CUDA build of torch, plus `pip install -e ".[dmc]"` (mujoco 3.3,
# dm_control; nothing is downloaded at run time). Creates nothing outside the repository: run
# output under $OUT, caches under runs/.cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"
gpu_recipe dmc18 "${OUT:-runs/dmc18}" "${SEED:-0}" "import dm_control.suite, mujoco" 'pip install -e ".[dmc]"'
