# Shared part of the GPU recipes (sourced by gpu_atari8.sh and gpu_dmc18.sh; not run alone):
# keep caches inside the repository, check the GPU and the family's packages, train the suite or
# resume it from its newest checkpoint, then write the report.
#
#   gpu_recipe SUITE OUT SEED "import mod1, mod2" "pip install hint"

gpu_recipe() {
  local suite="$1" out="$2" seed="$3" imports="$4" hint="$5"
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$ROOT"
  local py="${PY:-.venv/bin/python}"
  case "$(realpath -m "$out")" in
    "$ROOT"/*) ;;
    *) echo "OUT=$out is outside the repository; give a path under $ROOT" >&2; return 2 ;;
  esac

  # Keep the caches of matplotlib, numba and torch inside the repository.
  export XDG_CACHE_HOME="$ROOT/runs/.cache"
  export MPLCONFIGDIR="$ROOT/runs/.cache/matplotlib"
  export NUMBA_CACHE_DIR="$ROOT/runs/.cache/numba"
  export TORCHINDUCTOR_CACHE_DIR="$ROOT/runs/.cache/torchinductor"
  export TRITON_CACHE_DIR="$ROOT/runs/.cache/triton"
  mkdir -p "$MPLCONFIGDIR"

  IMPORTS="$imports" HINT="$hint" "$py" - <<'PYEOF' || return 2
import os, sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}: install a CUDA build of torch into .venv")
try:
    exec(os.environ["IMPORTS"])
except ImportError as exc:
    sys.exit(f"{exc}: {os.environ['HINT']}")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PYEOF

  local start
  start=$(date +%s)
  if [ -f "$out/config.yaml" ] && [ -d "$out/checkpoints" ] && [ -n "$(ls -A "$out/checkpoints" 2>/dev/null)" ]; then
    echo "resuming $out"
    "$py" -m scalezero.cli train --resume "$out" --device cuda
  else
    "$py" -m scalezero.cli train --suite "$suite" --device cuda --seed "$seed" --out "$out"
  fi
  echo "training took $(( ($(date +%s) - start) / 60 )) min"
  "$py" -m scalezero.cli report --run "$out"
  echo "report: $out/report.html and $out/report.md"
}
