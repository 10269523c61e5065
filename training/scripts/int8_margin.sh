#!/usr/bin/env bash
# Chooses the static int8 export's --selection-margin on the suite's VALIDATION split, then runs
# the downstream gate once, on test, for the margin chosen (docs/benchmarks.md, issue 16):
#   for each margin: export a static int8 bundle of the fp32 base -> int8-gate --split val;
#   the chosen margin is the smallest (fewest float layers: fastest) whose bundle is within half
#   a point of fp32 on every validation task; then int8-gate --split test on that bundle only.
# Outputs under runs/int8-margin/ (gitignored). Run from anywhere:
#   DATA_ROOT=../shared/data MARGINS="0.01 0.02 0.03" training/scripts/int8_margin.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=${NOTESPACE:-.venv/bin/notespace}
DATA_ROOT=${DATA_ROOT:-../shared/data}
MARGINS=${MARGINS:-0.01 0.02 0.03}
OUT=runs/int8-margin
NOTES=$DATA_ROOT/mtsamples/mtsamples.csv
HELD_OUT=training/configs/mtsamples-test-ids.txt  # the suite's test notes: never calibrated on
mkdir -p "$OUT"
lscpu | grep -o -E 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8|avx2' | sort -u | tr '\n' ' '
echo "(CPU features)"
FP32=$OUT/fp32
[[ -f $FP32/manifest.json ]] || "$NS" export --out "$FP32"
chosen=""
for m in $MARGINS; do
  bundle=$OUT/int8-margin-$m
  [[ -f $bundle/manifest.json ]] || "$NS" export --out "$bundle" --precision int8 \
    --calibration-notes "$NOTES" --held-out-ids "$HELD_OUT" --selection-margin "$m"
  echo "== margin $m, validation split"
  if "$NS" int8-gate --int8 "$bundle" --fp32 "$FP32" --data-root "$DATA_ROOT" --split val \
    --out "$OUT/val-$m" --cache-dir "$OUT/cache"; then
    chosen=$m
    break
  fi
done
if [[ -z $chosen ]]; then
  echo "no margin in ($MARGINS) passes on validation: no int8 bundle is recommended"
  exit 1
fi
echo "== chosen on validation: --selection-margin $chosen; the gate, once, on test"
"$NS" int8-gate --int8 "$OUT/int8-margin-$chosen" --fp32 "$FP32" --data-root "$DATA_ROOT" \
  --out "$OUT/test-$chosen" --cache-dir "$OUT/cache"
