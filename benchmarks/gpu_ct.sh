#!/usr/bin/env bash
# GPU session for the CT study: train the diffusion priors at 64 x 64 and 128 x 128 side by side.
#
#   bash benchmarks/gpu_ct.sh OUT_DIR
#
# The same `gensci ct train-prior` a CPU user runs, with --device cuda, wider UNets and more steps.
# Each training has a wall-clock limit (TRAIN_LIMIT s); a run it cuts is finished by resuming to
# the step it reached, which writes the EMA weights. Outputs: one tar per prior in OUT_DIR.
set -u
OUT=${1:?usage: gpu_ct.sh OUT_DIR}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
STEPS64=${STEPS64:-8000}
STEPS128=${STEPS128:-5000}
AUG=${AUG:-15}  # random affine copies per training slice
TRAIN_LIMIT=${TRAIN_LIMIT:-300}
PY=${PY:-python3}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
CT=runs/ct_gpu
mkdir -p "$CT/logs"
P64=(--resolution 64 --batch-size 32 --lr 1e-3 --lr-schedule cosine --schedule-steps "$STEPS64"
     --base-channels 32 --channel-mults 1,2,2,2 --checkpoint-every 500 --augment "$AUG" --seed 0)
P128=(--resolution 128 --batch-size 16 --lr 1e-3 --lr-schedule cosine --schedule-steps "$STEPS128"
      --base-channels 32 --channel-mults 1,2,2,2,2 --checkpoint-every 500 --augment "$AUG" --seed 0)

collect() {
  for run in prior64 prior128; do
    keep=()
    for f in prior.safetensors train/metrics.csv train/spec.json; do
      [ -f "$CT/$run/$f" ] && keep+=("$CT/$run/$f")
    done
    [ ${#keep[@]} -gt 0 ] && tar cf "$OUT/ct_$run.tar" "${keep[@]}"
  done
  tar cf "$OUT/ct_logs.tar" "$CT/logs"
  true
}
trap collect EXIT

source "$(dirname "$0")/gpu_common.sh"  # finish_ct

{ nvidia-smi --query-gpu=name,memory.total --format=csv
  $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } > "$CT/logs/env.txt" 2>&1
start=$(date +%s)
timeout "$TRAIN_LIMIT" $PY -m gensci.cli ct train-prior --out "$CT/prior64" "${P64[@]}" \
  --steps "$STEPS64" --device "$DEVICE" > "$CT/logs/train64.txt" 2>&1 &
timeout "$TRAIN_LIMIT" $PY -m gensci.cli ct train-prior --out "$CT/prior128" "${P128[@]}" \
  --steps "$STEPS128" --device "$DEVICE" > "$CT/logs/train128.txt" 2>&1 &
wait
finish_ct "$CT/prior64" "$CT/logs" "${P64[@]}"
finish_ct "$CT/prior128" "$CT/logs" "${P128[@]}"
echo "wall seconds: $(( $(date +%s) - start ))" >> "$CT/logs/env.txt"
