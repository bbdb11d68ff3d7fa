#!/bin/bash
# The GPU suite: every GPU number the docs need, in one run that fits one ~9-minute GPU call (about 8 minutes
# on an H100). Each step is its own process under `timeout` (one failing or hanging step never stops the
# rest), prints its rows as it measures them and appends a dated section (date, machine with the GPU's name,
# command) to docs/benchmarks.md through benchmarks/_record.py:
#   1. scorecam     Score-CAM, ResNet50 (1 channel), 224² and 1024²: ours float32, bf16, top-k beside
#                   pytorch-grad-cam, max |diff| / IoU@0.5 to our float32 (benchmarks/scorecam_speed.py)
#   2. predict      1080² predict of the `small` and `study` U-Nets and the `fast` scorecam-unet student: per
#                   image beside one bare forward and MONAI's sliding window, then a 200-image plate through
#                   `artseg predict` end to end (benchmarks/gpu_suite.py predict)
#   3. train-speed  study U-Net training images/s at 512², bf16, channels-last, loader workers
#   4. smoke        `artseg train` + `artseg predict` of every method, tiny budgets
#   5. quality      one 3-minute study U-Net training scored on a synthetic test split (its 1080² data is
#                   written in the background while steps 1-4 run)
# A missing optional peer (grad-cam, MONAI, ultralytics) prints `skipped: <reason>`; a failed step prints
# `FAILED: <step>` and the suite exits 1 at the end.
#
# On the GPU machine (project root; wheels prepared on a networked machine with `bash benchmarks/gpu_wheels.sh`
# into .whl/, git-ignored, carried along):
#   source .whl/prelude.sh && bash benchmarks/gpu_suite.sh
# Only stdout comes back from such a machine: the sections are printed in full as they are appended; to
# bring the file back too, append to the output folder instead:
#   source .whl/prelude.sh && ARTSEG_BENCHMARKS_DOC=$OUT/benchmarks.md bash benchmarks/gpu_suite.sh
# On a CPU, the same code at tiny sizes (tests/test_gpu_suite.py runs it; not a measurement), its sections
# appended to a temporary file, never to docs/benchmarks.md:
#   bash benchmarks/gpu_suite.sh --dry-run
# Options: --budget SECONDS for the whole suite (default 540: later steps get what is left), --only STEP,...
set -u
dry=0; budget=540; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --budget) budget=$2; shift ;;
    --only) only=$2; shift ;;
    *) echo "usage: bash benchmarks/gpu_suite.sh [--dry-run] [--budget SECONDS] [--only STEP,...]" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 MPLBACKEND=Agg
work=$(mktemp -d /tmp/gpu_suite.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ $dry = 1 ]; then
  export ARTSEG_BENCHMARKS_DOC=${ARTSEG_BENCHMARKS_DOC:-$(mktemp /tmp/gpu_suite_dry_run.XXXXXX.md)}
  # one thread: on a shared CPU, two threads of tiny convolutions wait on each other (seconds instead of ms)
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  device=cpu; flags=(--dry-run); max_time=0.05
else
  device=cuda; flags=(--device cuda); max_time=3
fi
start=$(date +%s); deadline=$((start + budget)); failed=()

step() {  # step NAME LIMIT_S COMMAND...: run under `timeout`, never longer than the suite's budget left
  local name=$1 limit=$2 left rc t0
  shift 2
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then return; fi
  left=$((deadline - $(date +%s)))
  if [ $left -lt 20 ]; then echo "skipped: $name: the suite's ${budget}s budget is spent"; return; fi
  [ "$limit" -gt $left ] && limit=$left
  echo "=== $name: start $(date +%T), limit ${limit}s"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1
  rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then echo "FAILED: $name: timed out after ${limit}s"; failed+=("$name")
  elif [ $rc != 0 ]; then echo "FAILED: $name: exit $rc"; failed+=("$name"); fi
  echo "=== $name: end $(date +%T), $(( $(date +%s) - t0 ))s"
}

echo "GPU suite $(date -u +%Y-%m-%dT%H:%MZ), device $device, budget ${budget}s, records to ${ARTSEG_BENCHMARKS_DOC:-docs/benchmarks.md}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
# the quality step's data, written on the CPU while the GPU steps run
if [ -z "$only" ] || [[ ",$only," == *",quality,"* ]]; then
  "$py" benchmarks/gpu_suite.py quality-data "${flags[@]}" --data "$work/quality_data" > "$work/quality_data.log" 2>&1 &
  data_pid=$!
fi
wait_data() {
  if [ -n "${data_pid:-}" ] && ! wait "$data_pid"; then echo "FAILED: quality-data:"; tail -n 3 "$work/quality_data.log"; fi
}
suite=(benchmarks/gpu_suite.py)
if [ $dry = 1 ]; then
  # one process for every step: a tiny step costs little more than starting Python, torch and Lightning
  wait_data
  steps=${only:-scorecam,predict,train-speed,smoke,quality}; only=""
  step dry-run 300 "$py" "${suite[@]}" "$steps" --dry-run --work "$work" --data "$work/quality_data" --max-time $max_time
  only=none
fi
step scorecam 120 "$py" "${suite[@]}" scorecam "${flags[@]}"
step predict 150 "$py" "${suite[@]}" predict "${flags[@]}" --work "$work"
step train-speed 90 "$py" "${suite[@]}" train-speed "${flags[@]}" --work "$work"
step smoke 150 "$py" "${suite[@]}" smoke "${flags[@]}" --work "$work"
wait_data
# the training gets what the budget has left after ~60 s of loading, choosing the threshold and scoring
left=$((deadline - $(date +%s) - 60))
[ $dry = 0 ] && [ $left -lt 180 ] && max_time=$(awk "BEGIN {print ($left > 30 ? $left : 30) / 60}")
step quality 270 "$py" "${suite[@]}" quality "${flags[@]}" --data "$work/quality_data" --max-time "$max_time" --work "$work"
echo "GPU suite done in $(( $(date +%s) - start ))s; failed steps: ${failed[*]:-none}"
[ $dry = 1 ] && echo "dry run: sections appended to $ARTSEG_BENCHMARKS_DOC (not docs/benchmarks.md)"
[ ${#failed[@]} = 0 ]
