#!/usr/bin/env bash
# The one command to run on a lent GPU machine (one run, < 8 min): benchmarks/gpu_check.py on CUDA.
#
# What it measures (details in gpu_check.py's docstring), all into one JSON file:
#   environment    torch / CUDA / device facts (stops at once if torch sees no CUDA device)
#   correctness    same weights on CPU and GPU: encoders, forward_sequence, learner losses and
#                  gradients (max |diff|, strict fp32 within 1e-3, default fp32 reported); on the
#                  GPU the KV-cached initial+recurrent inference against the full-sequence
#                  forward, and batched pUCT/Gumbel searches returning legal actions
#   learner_speed  Learner.update per second at the minatar and atari8 model/batch sizes
#                  (synthetic replays), and minatar on the CPU for a ratio
#   search_speed   batched searches per second at 64 and 256 roots, each suite's simulations
#   training       scalezero train --suite cartpole --device cuda for 2,000 env steps: final
#                  eval return, wall time, phase_s
#
# Prepare on the CPU machine, in the repository root (once; .whl/ stays out of git):
#   grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl gymnasium==1.4.0 minatar==1.0.15 farama-notifications==0.0.6 cloudpickle==3.1.3
# (the versions in .venv; all four are pure-Python wheels, about 0.5 MiB together). Of
# pyproject.toml's dependencies the device image already has torch, numpy, numba, pyyaml,
# safetensors, rich, tensorboard and matplotlib (and cloudpickle and typing-extensions, which
# gymnasium needs); gymnasium, minatar and farama-notifications are not there. cloudpickle
# travels anyway: one pure-Python copy that shadows the image's does no harm. The check needs
# gymnasium only for its training part (cartpole); minatar is carried for completeness.
#
# Run it through the device tool, from the repository root:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=500)
# Extra arguments go to gpu_check.py (e.g. `bash benchmarks/gpu_check.sh --skip training`).
# What comes back: $OUT/gpu_check.json (rewritten after every part, so a run cut short keeps
# what it measured) and $OUT/gpu_check.log (the console output).

set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PY="${PY:-python3}"
RESULT="$ROOT/benchmarks/results/gpu_check.json"
LOG="${OUT:-/tmp}/gpu_check.log"

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check.sh: installing the wheels in .whl/ failed" >&2; exit 3; }
  export PYTHONPATH="/tmp/site:$ROOT"
else
  echo "gpu_check.sh: no .whl/ here (gymnasium is needed by the training part; see the header)" >&2
  export PYTHONPATH="$ROOT"
fi

# Caches in /tmp, none in the home directory or the image.
export XDG_CACHE_HOME=/tmp/gpu_check_cache
export MPLCONFIGDIR=/tmp/gpu_check_cache/matplotlib
export NUMBA_CACHE_DIR=/tmp/gpu_check_cache/numba
export TORCHINDUCTOR_CACHE_DIR=/tmp/gpu_check_cache/torchinductor
export TRITON_CACHE_DIR=/tmp/gpu_check_cache/triton
mkdir -p "$MPLCONFIGDIR" "$NUMBA_CACHE_DIR" "$(dirname "$RESULT")"

nvidia-smi || echo "gpu_check.sh: nvidia-smi failed or is missing" >&2

PYTHONUNBUFFERED=1 timeout 450 "$PY" benchmarks/gpu_check.py --device cuda --out "$RESULT" "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
  echo "gpu_check.sh: stopped after 450 s; the JSON holds the parts that finished" >&2
fi

if [ -n "${OUT:-}" ] && [ -f "$RESULT" ]; then
  cp "$RESULT" "$OUT/gpu_check.json"
fi
exit "$status"
