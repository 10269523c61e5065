#!/usr/bin/env bash
# The mixing-weight sweep on validation (docs/results.md, "Choosing the mixing weight"): the
# base against one adapt run's weight bundles (runs/adapt/NAME/weights/alpha-A) on the sweep
# suite's validation split. Run after `adapt_results.sh` has trained NAME:
#   DATA_ROOT=../shared/data training/scripts/alpha_sweep.sh mtsamples-s1 0.3 0.5 0.8
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
NS=${NOTESPACE:-.venv/bin/notespace}
DATA_ROOT=${DATA_ROOT:-../shared/data}
name=$1; shift
models=(--models base)
for alpha in "$@"; do models+=(--models "a$alpha=runs/adapt/$name/weights/alpha-$alpha"); done
lscpu | grep -o -E 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8|avx2' | sort -u | tr '\n' ' '
echo "(CPU features) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$NS" evaluate --suite training/configs/suites/sweep.yaml --split val --data-root "$DATA_ROOT" \
  "${models[@]}" --cache-dir runs/cache --out "runs/eval/alpha-sweep-$name"
