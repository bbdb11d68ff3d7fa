#!/bin/bash
# benchmarks/weak_seeds.py on a GPU machine: every (seed, look) as its own process, all at once, then the summary.
# Command (project root, wheels from ../shared/scripts/gpu/prepare.sh in .whl/):
#   source .whl/prelude.sh && bash benchmarks/weak_seeds_gpu.sh OUT_DIR [SEEDS] [MAX_TIME_MIN] [LIMIT_S]
# CPU smoke: PATH=.venv/bin:$PATH PYTHONPATH=src WS_DEVICE=cpu WS_ARGS="--tiny --size 64 --n-train 8 --n-val 4 --n-test 4
#   --n-cross 4 --max-epochs 1" bash benchmarks/weak_seeds_gpu.sh /tmp/ws_out 0 0.2 300
# Each process prints its rows (RESULT {...}) as it measures them and appends them to OUT_DIR/<look>_s<seed>.jsonl;
# LIMIT_S bounds every process, so rows measured before the limit survive a cut.
out=${1:?output folder}; seeds=${2:-0 1 2}; max_time=${3:-0.5}; limit=${4:-480}
mkdir -p "$out"
cores=$(nproc); procs=$(( $(echo $seeds | wc -w) * 2 )); threads=$(( cores / procs > 0 ? cores / procs : 1 ))
pids=()
echo "START $(date +%T) $procs processes x $threads threads, --max-time $max_time, limit ${limit}s"
for seed in $seeds; do
  for look in 7cl lncap; do
    : > "/tmp/ws_${look}_s${seed}.log"
    # WS_ARGS: extra arguments (a CPU smoke run: WS_DEVICE=cpu WS_ARGS="--tiny --size 64 ...")
    timeout "$limit" python3 benchmarks/weak_seeds.py run --seed "$seed" --look "$look" --device "${WS_DEVICE:-cuda}" \
      --threads "$threads" --max-time "$max_time" --work /tmp/weak_seeds --jsonl "$out/${look}_s${seed}.jsonl" $WS_ARGS \
      > "/tmp/ws_${look}_s${seed}.log" 2>&1 &
    pids+=($!)
  done
done
# progress while they run: one line per finished row
tail -q -n +1 -F /tmp/ws_*.log 2>/dev/null | grep --line-buffered -E "^RESULT|Error|SKIP|Traceback" | \
  python3 -c "
import json, sys
for line in sys.stdin:
    if line.startswith('RESULT '):
        r = json.loads(line[7:])
        if r['min_object_px'] == 0 and not r['fill_holes']:
            print(f\"{r['look']} s{r['seed']} {r['test_set']:10s} {r['variant']:20s} {r['scoring']:11s} IoU {r['pixel_iou']:.3f} obj {r['object_iou']:.3f} train {r['train_min']:.1f} min epochs {r['epochs']}\", flush=True)
    else:
        print(line.rstrip(), flush=True)
" &
wait "${pids[@]}"
sleep 2; pkill -f "tail -q -n \+1 -F /tmp/ws_" 2>/dev/null
for f in /tmp/ws_*.log; do grep -q Traceback "$f" && { echo "== $f"; tail -n 12 "$f"; }; done
echo "END $(date +%T)"
python3 benchmarks/weak_seeds.py summarise "$out"/*.jsonl --no-append
