# Shared by the GPU session scripts (sourced, not run). Needs PY and DEVICE set.

# finish_ct RUN_DIR LOG_DIR OPTIONS...: finish a `gensci ct train-prior` run that a time limit
# cut. Resuming to the step it reached (OPTIONS: those the run was started with) writes the model
# file (EMA weights) without training further.
finish_ct() {
  local d=$1 log=$2 n
  shift 2
  [ -f "$d/prior.safetensors" ] || [ ! -f "$d/train/last.pt" ] && return
  n=$($PY -c "import torch; print(torch.load('$d/train/last.pt', weights_only=True)['step'])")
  echo "$d cut at step $n" >> "$log/env.txt"
  $PY -m gensci.cli ct train-prior --out "$d" "$@" --steps "$n" --device "$DEVICE" \
    >> "$log/finish_ct.txt" 2>&1
}
