#!/usr/bin/env bash
# The main job end to end on built-in synthetic data, sized for 2 CPU cores (a few minutes):
# synth -> train (small U-Net) -> predict -> evaluate -> overlays.
set -euo pipefail
OUT=${1:-demo_out}
ARTSEG=${ARTSEG:-.venv/bin/artseg}
rm -rf "$OUT"
$ARTSEG synth "$OUT/data" --n-train 24 --n-val 8 --n-test 8 --size 256 --seed 0
$ARTSEG train unet --data "$OUT/data" --out "$OUT/unet" --preset small --max-time 4
$ARTSEG predict "$OUT/unet" "$OUT/data/images" --out "$OUT/pred"
$ARTSEG evaluate --data "$OUT/data" --pred "$OUT/pred" --split test --json "$OUT/metrics.json" --overlays "$OUT/overlays"
echo "demo finished: metrics in $OUT/metrics.json, overlays (TP green, FP red, FN blue) in $OUT/overlays/"
