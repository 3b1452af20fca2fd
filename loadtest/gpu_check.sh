#!/usr/bin/env bash
# The GPU check, in one call of about 8 minutes at most, from the repository root:
#
#   1. model-only throughput (loadtest.model_bench --synthetic): MiniLM-L6 (the shipped model)
#      and a BERT-base-sized encoder (random weights) at 64 and 128 tokens, batch 256/512/1024,
#      bf16 autocast, inference_mode, warm-up, CUDA-synchronised timing;
#   1b. event-phrase encodes (loadtest.phrase_vectors): every distinct phrase of the REES46 dev
#      slice (or the bundled sample) through the pooled model's phrase encoder on the device,
#      each phrase once, as the worker's EventVectors encodes its unseen phrases;
#   2. the worker end to end with the shipped model on the GPU (loadtest.bench, rows a-d: the
#      pooled model over event vectors, so row c reports encoder sequences per event and the
#      vector hit rates), then row c again with INTENT_PIPELINE_OVERLAP=off (on by default with
#      CUDA) if time is left.
#
# Results go to $OUT (default ./gpu-check-out): summary.txt, model_only.json, phrases.json,
# bench.json, bench-table.md, bench-overlap-off.md, bench-logs.tar.gz, env.txt, gpu_check.log
# (9 files, no deeper folders).
#
# Python: the project's .venv when it imports the project, else ./bootstrap is tried (it needs
# a package index). bootstrap installs the CPU wheel of torch, so CUDA is checked explicitly:
# when the venv's torch has no CUDA, step 1 runs with the first other python3 whose torch
# sees a GPU (it needs only torch + transformers; without the shipped encoder package it
# times a random MiniLM-shaped encoder, and says so), and step 2 is skipped with a note on
# what to install (docs/gpu.md).
#
# Knobs (environment): GPU_CHECK_BUDGET_S (470), GPU_CHECK_DEVICE (auto; cpu = test the CPU
# path here), GPU_CHECK_QUICK=1 (tiny sizes), GPU_CHECK_PYTHON (a python with the project
# installed, instead of .venv), BENCH_EVENTS (20000), BENCH_LATENCY_S (20).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-470}
DEVICE=${GPU_CHECK_DEVICE:-auto}
QUICK=${GPU_CHECK_QUICK:-0}
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "[gpu_check $(date -u +%H:%M:%S)] $*"; echo "$*" >>"$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# timeout for a step: at most $1 seconds, and never past the budget (minus a reserve)
cap() { local l; l=$(($(left) - 15)); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }

say "gpu_check started $(date -u +%FT%TZ) on $(hostname), budget ${BUDGET}s, device=$DEVICE quick=$QUICK"
{
  echo "date: $(date -u +%FT%TZ)"; uname -a; nproc
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  command -v redis-server >/dev/null && redis-server --version || echo "redis-server: missing"
} >"$OUT/env.txt" 2>&1

# --- which python -----------------------------------------------------------------------
probe() {  # $1 python: prints "torch_version cuda_available" or fails
  "$1" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>/dev/null
}
project_ok() { "$1" -c 'import faust, aiokafka, redis, orjson, jsonschema_rs, worker.cli' 2>/dev/null; }

VENV_PY=""
if [ -n "${GPU_CHECK_PYTHON:-}" ] && project_ok "$GPU_CHECK_PYTHON"; then
  VENV_PY=$GPU_CHECK_PYTHON
  say "using GPU_CHECK_PYTHON=$VENV_PY ($(probe "$VENV_PY" || echo 'no torch'))"
elif [ -x .venv/bin/python ] && project_ok .venv/bin/python; then
  VENV_PY=.venv/bin/python
  say "using the existing .venv ($(probe .venv/bin/python || echo 'no torch'))"
else
  say "no working .venv: trying ./bootstrap (needs a package index; up to $(cap 200)s)"
  if timeout "$(cap 200)" ./bootstrap && project_ok .venv/bin/python; then
    VENV_PY=.venv/bin/python
    say "bootstrap ok ($(probe .venv/bin/python))"
  else
    say "bootstrap failed or timed out (no package index on this machine?): no project venv"
  fi
fi

CUDA_PY=""
for py in $VENV_PY python3 /opt/torch/.venv/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
  read -r tv cuda <<<"$(probe "$py")"
  [ -n "$tv" ] || continue
  echo "python $py: torch $tv, cuda $cuda" >>"$OUT/env.txt"
  if [ "$cuda" = "True" ] && [ -z "$CUDA_PY" ]; then CUDA_PY=$py; fi
done
if [ "$DEVICE" = "cpu" ]; then
  MODEL_PY=${VENV_PY:-python3}; MDEV=cpu
  say "GPU_CHECK_DEVICE=cpu: testing the CPU path with $MODEL_PY"
elif [ -n "$CUDA_PY" ]; then
  MODEL_PY=$CUDA_PY; MDEV=cuda
  say "CUDA available to $CUDA_PY ($(probe "$CUDA_PY")): model-only runs on the GPU"
else
  MODEL_PY=${VENV_PY:-python3}; MDEV=cpu
  say "CUDA NOT AVAILABLE: no python here has a torch that sees a GPU" \
      "(the venv's is $(probe "${VENV_PY:-python3}" || echo none); bootstrap pins the CPU wheel:" \
      "see docs/gpu.md). Model-only falls back to a short CPU run."
fi
if [ -n "$VENV_PY" ] && [ "$MDEV" = cuda ] && [ "$MODEL_PY" != "$VENV_PY" ]; then
  say "NOTE: the project venv's torch has no CUDA; the end-to-end step would run on the CPU, so it is skipped"
fi

# --- 1. model only ----------------------------------------------------------------------
if [ "$MDEV" = cuda ] && [ "$QUICK" != 1 ]; then
  SIZES=(256 512 1024); NB=20
else
  SIZES=(8); NB=2
fi
say "model-only: ${SIZES[*]} x tokens 64 128, $NB timed batches each, device $MDEV"
timeout "$(cap 240)" "$MODEL_PY" -m loadtest.model_bench --synthetic --device "$MDEV" \
  --encoder minilm bert-base --tokens 64 128 --batch-sizes "${SIZES[@]}" --batches "$NB" \
  --out "$OUT/model_only.json" >/dev/null
rc=$?
[ $rc -eq 0 ] || say "model-only step failed (exit $rc)"
if [ -f "$OUT/model_only.json" ]; then
  "$MODEL_PY" - "$OUT/model_only.json" >>"$SUMMARY" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
print("env:", doc["env"])
for r in doc["results"]:
    if "error" in r:
        print(f"{r['encoder']:9s} tokens={r['tokens']:4d} batch={r['batch_size']:5d}  {r['error']}")
    else:
        print(f"{r['encoder']:9s} tokens={r['tokens']:4d} batch={r['batch_size']:5d} "
              f"{r['seq_per_s']:12,.0f} seq/s {r['ms_per_batch']:9.2f} ms/batch  [{r['weights']}]")
EOF
fi

# --- 1b. event-phrase encodes -------------------------------------------------------------
PHRASE_DATA=../shared/data/rees46/events-dev.csv
[ -f "$PHRASE_DATA" ] || PHRASE_DATA=worker/data/sample-rees46.csv
if [ -n "$VENV_PY" ] && [ "$(left)" -ge 120 ]; then
  PDEV=$MDEV; [ "$MODEL_PY" = "$VENV_PY" ] || PDEV=cpu
  say "phrase encodes: loadtest.phrase_vectors $PHRASE_DATA --price bucket --device $PDEV"
  timeout "$(cap 90)" "$VENV_PY" -m loadtest.phrase_vectors "$PHRASE_DATA" --format rees46 \
    --price bucket --device "$PDEV" >"$OUT/phrases.json" 2>>"$OUT/gpu_check.log" \
    && grep -E '"(distinct_phrases|phrases_per_event|device|encode_s|vectors_per_s)"' \
      "$OUT/phrases.json" >>"$SUMMARY" || say "phrase step failed or timed out"
fi

# --- 2. the worker end to end -----------------------------------------------------------
E2E_PY=""
if [ -n "$VENV_PY" ]; then
  if [ "$DEVICE" = cpu ]; then E2E_PY=$VENV_PY; BDEV=cpu
  elif [ "$(probe "$VENV_PY" | cut -d' ' -f2)" = True ]; then E2E_PY=$VENV_PY; BDEV=cuda
  fi
fi
if [ -z "$E2E_PY" ]; then
  say "end-to-end: SKIPPED (needs the project venv with a CUDA torch: install a CUDA build of" \
      "torch first, then ./bootstrap; docs/gpu.md)"
elif ! command -v redis-server >/dev/null 2>&1; then
  say "end-to-end: SKIPPED (redis-server missing; bootstrap installs it with apt as root)"
elif [ "$(left)" -lt 90 ]; then
  say "end-to-end: SKIPPED (only $(left)s of the budget left)"
else
  if [ "$QUICK" = 1 ]; then EV=600; MEV=300; LAT=3; else EV=${BENCH_EVENTS:-20000}; MEV=$EV; LAT=${BENCH_LATENCY_S:-20}; fi
  say "end-to-end: loadtest.bench --events $EV --model-events $MEV --device $BDEV --latency-seconds $LAT (up to $(cap 330)s)"
  rm -rf /tmp/gpu-check-bench
  timeout "$(cap 330)" "$E2E_PY" -m loadtest.bench --events "$EV" --model-events "$MEV" \
    --device "$BDEV" --latency-seconds "$LAT" --row-timeout 240 --out-dir /tmp/gpu-check-bench
  rc=$?
  [ $rc -eq 0 ] || say "end-to-end step failed (exit $rc)"
  run=$(ls -d /tmp/gpu-check-bench/*/ 2>/dev/null | tail -1)
  if [ -n "$run" ]; then
    cp "$run/bench.json" "$OUT/bench.json" 2>/dev/null
    cp "$run/table.md" "$OUT/bench-table.md" 2>/dev/null && cat "$run/table.md" >>"$SUMMARY"
    tar -czf "$OUT/bench-logs.tar.gz" -C "$run" --exclude='*.jsonl' . 2>/dev/null
  fi
  # INTENT_PIPELINE_OVERLAP defaults to on with a CUDA model: row c again without it
  if [ "$(left)" -ge 90 ]; then
    say "end-to-end, row c with INTENT_PIPELINE_OVERLAP=off (the run above: auto, on with CUDA)"
    rm -rf /tmp/gpu-check-bench-off
    INTENT_PIPELINE_OVERLAP=off timeout "$(cap 150)" "$E2E_PY" -m loadtest.bench --rows c \
      --latency-rows "" --events "$MEV" --model-events "$MEV" --device "$BDEV" \
      --row-timeout 120 --out-dir /tmp/gpu-check-bench-off
    run=$(ls -d /tmp/gpu-check-bench-off/*/ 2>/dev/null | tail -1)
    if [ -n "$run" ] && cp "$run/table.md" "$OUT/bench-overlap-off.md" 2>/dev/null; then
      cat "$run/table.md" >>"$SUMMARY"
    fi
  fi
fi
say "gpu_check done in $(($(date +%s) - START))s"
