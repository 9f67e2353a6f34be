#!/usr/bin/env bash
# Atari 100k, eight games, one model, one GPU: the `atari8` suite (scalezero/suites/atari8.yaml).
#
#   bash benchmarks/gpu_atari8.sh            # train (or resume) runs/atari8, then write its report
#   SEED=1 OUT=runs/atari8-s1 bash benchmarks/gpu_atari8.sh
#
# Games: Pong, Ms. Pac-Man, Seaquest, Boxing, Alien, Chopper Command, H.E.R.O., Road Runner.
# Protocol (scalezero/tasks/atari.py): 64x64 grey frames, frame skip 4 with max-pooling, 1-30
# no-op starts, no sticky actions, a lost life ends a training episode, evaluation plays full
# games capped at 27,000 steps (108,000 frames), rewards unclipped.
#
# Budget: 100,000 agent steps per game (400,000 frames; 800,000 steps in all), 50 pUCT
# simulations per step, 25,000 learner updates of 8 x 32 windows of 11 steps; a model of about
# 189M parameters (width 768, 4 layers, 8 routed experts + 1 shared, top-1); four evaluations
# of 8 full games per game (at 25k, 50k, 75k and 100k steps per game).
#
# Machine: one 80 GB GPU (H100 class) and >= 32 GB of host memory (replay: ~0.4 GB of frames per
# game), ~20 GB of free disk in runs/ (two checkpoints with compressed replay).
# Expected wall time: about 4 to 6 hours on one H100. This is an estimate from the work above
# (12,500 batched searches over 64 roots, 25,000 updates, 800,000 emulator steps on the CPU,
# four evaluations whose length is set by the longest game); it has not been measured yet.
# The run prints its throughput as it goes, and metrics.json records wall_s and env_steps_per_s.
# An evaluation in which an agent stalls a game costs up to 27,000 searches: lower
# train.eval_max_steps in a copy of the suite if that matters more than the protocol.
#
# Interrupted (Ctrl-C, SIGTERM, a lost machine)? Run this script again: it resumes from the
# newest intact checkpoint (every 25,000 steps per game).
#
# Needs: .venv with a CUDA build of torch, plus `pip install -e ".[atari]"` (ale-py, OpenCV)
# (the ROMs ship in the ale-py wheel; nothing is downloaded). Creates nothing outside the
# repository: run output under $OUT, caches under runs/.cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_common.sh"
# The report gives the human-normalised score per game, mean and median over the eight games.
gpu_recipe atari8 "${OUT:-runs/atari8}" "${SEED:-0}" "import ale_py, cv2" 'pip install -e ".[atari]"'
