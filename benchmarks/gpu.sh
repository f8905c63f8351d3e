#!/usr/bin/env bash
# One GPU session: train the Poisson surrogates and a CT prior on CUDA, then evaluate them there.
#
#   bash benchmarks/gpu.sh OUT_DIR
#
# Runs the same benchmark commands a CPU user runs, with --device cuda and larger batches. The
# trainings run side by side on the one GPU; each phase has a wall-clock limit so the script ends
# in about nine minutes; whatever finished is packed into a few tar files in OUT_DIR (one per
# model, the CT prior, the JSON results with the logs).
# Sizes can be shrunk for a dry run: P_STEPS, CT_STEPS, VAE_STEPS, TRAIN_LIMIT, EVAL_LIMIT.
set -u
OUT=${1:?usage: gpu.sh OUT_DIR}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
P_STEPS=${P_STEPS:-5000}  # measured on an H200: about 24 steps/s each, side by side
CT_STEPS=${CT_STEPS:-5500}  # about 25 steps/s beside the Poisson runs
VAE_STEPS=${VAE_STEPS:-3000}
TRAIN_LIMIT=${TRAIN_LIMIT:-260}
EVAL_LIMIT=${EVAL_LIMIT:-170}
PY=${PY:-python3}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export GENSCI_POISSON_RUNS=runs/poisson_gpu
CT=runs/ct_gpu
LOG=runs/gpu_logs
mkdir -p "$LOG" "$GENSCI_POISSON_RUNS" "$CT"

collect() {  # a few tar files, not many small files: the device tool returns only a handful
  local keep
  for run in diffusion regression varcoef; do  # one tar each (about 4 MB)
    d=$GENSCI_POISSON_RUNS/$run
    keep=()
    for f in model.safetensors surrogate_config.json metrics.csv; do
      [ -f "$d/$f" ] && keep+=("$d/$f")
    done
    [ ${#keep[@]} -gt 0 ] && tar cf "$OUT/poisson_$run.tar" "${keep[@]}"
  done
  # the diffusion prior only: the VAE prior (16 MB) retrains on a CPU in minutes
  keep=()
  for f in prior.safetensors train/metrics.csv train/spec.json; do
    [ -f "$CT/prior64/$f" ] && keep+=("$CT/prior64/$f")
  done
  [ ${#keep[@]} -gt 0 ] && tar cf "$OUT/ct_prior.tar" "${keep[@]}"
  tar cf "$OUT/results_and_logs.tar" "$LOG" benchmarks/results/*_cuda*.json \
    benchmarks/results/tomography_cuda_* 2>/dev/null
  rm -rf "$LOG"
  true
}
trap collect EXIT

{ nvidia-smi --query-gpu=name,memory.total --format=csv; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } > "$LOG/env.txt" 2>&1

# Finish a run that its time limit cut: resuming to the step it reached writes the model file
# (EMA weights) without training further; the cosine schedule was then not run to its end.
finish_poisson() {  # kind
  d=$GENSCI_POISSON_RUNS/$1
  [ -f "$d/model.safetensors" ] || [ ! -f "$d/last.pt" ] && return
  n=$($PY -c "import torch; print(torch.load('$d/last.pt', weights_only=True)['step'])")
  echo "$1 cut at step $n" >> "$LOG/env.txt"
  extra=""; [ "$1" = diffusion ] && extra="--prediction x0"
  $PY benchmarks/poisson.py train --kind "$1" $extra --steps "$n" --batch-size 32 --lr 2e-3 \
    --lr-schedule cosine --warmup 200 --device "$DEVICE" >> "$LOG/train_$1.txt" 2>&1
}
source "$(dirname "$0")/gpu_common.sh"  # finish_ct

# core throughput first, alone on the GPU
$PY benchmarks/core.py --device "$DEVICE" --out benchmarks/results/core_cuda.json \
  > "$LOG/core.txt" 2>&1

start=$(date +%s)
CT_PRIOR=(--resolution 64 --batch-size 32 --lr 1e-3 --lr-schedule cosine --base-channels 32
          --channel-mults 1,2,2,2 --checkpoint-every 500 --seed 0)
CT_VAE=(--kind vae --resolution 64 --batch-size 64 --lr 1e-3 --checkpoint-every 500 --seed 0)
timeout "$TRAIN_LIMIT" $PY -m gensci.cli ct train-prior --out "$CT/prior64" "${CT_PRIOR[@]}" \
  --steps "$CT_STEPS" --device "$DEVICE" > "$LOG/train_ct_prior.txt" 2>&1 &
timeout "$TRAIN_LIMIT" $PY -m gensci.cli ct train-prior --out "$CT/vae64" "${CT_VAE[@]}" \
  --steps "$VAE_STEPS" --device "$DEVICE" > "$LOG/train_ct_vae.txt" 2>&1 &

# the Poisson datasets (CPU) while the CT prior trains
$PY benchmarks/poisson.py data > "$LOG/poisson_data.txt" 2>&1
echo "poisson data ready after $(( $(date +%s) - start )) s" >> "$LOG/env.txt"
for kind in diffusion regression varcoef; do
  extra=""; [ $kind = diffusion ] && extra="--prediction x0"
  timeout "$TRAIN_LIMIT" $PY benchmarks/poisson.py train --kind $kind $extra \
    --steps "$P_STEPS" --batch-size 32 --lr 2e-3 --lr-schedule cosine --warmup 200 \
    --device "$DEVICE" > "$LOG/train_$kind.txt" 2>&1 &
done
wait
finish_ct "$CT/prior64" "$LOG" "${CT_PRIOR[@]}"
finish_ct "$CT/vae64" "$LOG" "${CT_VAE[@]}"
for kind in diffusion regression varcoef; do finish_poisson $kind; done
echo "training wall seconds: $(( $(date +%s) - start ))" >> "$LOG/env.txt"

# evaluations side by side (each CT wedge set writes its own JSON, so a cut one loses only itself)
timeout "$EVAL_LIMIT" $PY benchmarks/poisson.py evaluate --device "$DEVICE" \
  --out benchmarks/results/poisson_cuda.json > "$LOG/eval_poisson.txt" 2>&1 &
for wedges in 90 120,180; do
  timeout "$EVAL_LIMIT" $PY benchmarks/tomography.py --skip-anchors --device "$DEVICE" \
    --prior "$CT/prior64/prior.safetensors" --vae "$CT/vae64/prior.safetensors" \
    --wedges $wedges --out "benchmarks/results/tomography_cuda_${wedges/,/_}.json" --overwrite \
    > "$LOG/eval_ct_${wedges/,/_}.txt" 2>&1 &
done
wait
echo "total wall seconds: $(( $(date +%s) - start ))" >> "$LOG/env.txt"
