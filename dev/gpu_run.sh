#!/bin/bash
# One device call: GPU timing of siamese-prob-aug-tta-x2 (dev/gpu_jax.py) with the JAX (forced jit) and
# torch backends. Expects PYTHONPATH with keras/namex/optree from .whl/ already set. Logs go to $OUT.
# Each step runs under `timeout`, and is skipped when the call's own budget (BUDGET s) would run out.
DATA=.whl/mnist5k.npz; BUDGET=${BUDGET:-400}; T0=$SECONDS
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
nvidia-smi -L
KERAS_BACKEND=jax python3 -c "import keras, jax, torch; print('keras', keras.__version__, 'jax', jax.__version__, 'torch', torch.__version__)" 2>&1 | tee "$OUT/versions.txt"
step() {  # name, timeout, backend, args...
  local name=$1 lim=$2 be=$3; shift 3
  local left=$((BUDGET - (SECONDS - T0)))
  if [ "$left" -lt 40 ]; then echo "=== SKIP $name (only ${left}s left)"; return; fi
  [ "$lim" -gt "$left" ] && lim=$left
  echo "=== $name (timeout ${lim}s, at $((SECONDS - T0))s)"
  local s=$SECONDS
  KERAS_BACKEND=$be timeout "$lim" python3 dev/gpu_jax.py "$DATA" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name rc=${PIPESTATUS[0]} wall=$((SECONDS - s))s"
}
step jax_jit_smoke 90 jax --rounds 1 --epochs 2 --jit on
step jax_jit_full 150 jax --rounds 1 --jit on
step torch_eager_smoke 90 torch --rounds 1 --epochs 2 --jit off
step torch_eager_full 150 torch --rounds 1 --jit off
step torch_compile_smoke 100 torch --rounds 1 --epochs 2 --jit on
echo "=== total $((SECONDS - T0))s"
