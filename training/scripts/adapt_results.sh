#!/usr/bin/env bash
# Reproduces docs/results.md's adaptation figures (issue 22): the label-free `notespace adapt`
# on MTSamples text (the suite's test and validation notes excluded), three training seeds,
# then the default suite's test split: the base against every seed, pooled as one group.
# The specialty column is passed as the label column: the encoder is still trained label-free,
# and the labels fit the served head, compared with the same head on the base (adaptation.md).
# Outputs go to runs/ (gitignored); a seed whose bundle exists is skipped. Run from anywhere:
#   DATA_ROOT=../shared/data SEEDS="1 2 3" training/scripts/adapt_results.sh
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
NS=${NOTESPACE:-.venv/bin/notespace}
DATA_ROOT=${DATA_ROOT:-../shared/data}
SEEDS=${SEEDS:-1 2 3}
SPLIT=${SPLIT:-test}
SUITE=${SUITE:-default}
stamp() { date -u '+%F %T'; }
lscpu | grep -o -E 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8|avx2' | sort -u | tr '\n' ' '
echo "(CPU features) load: $(cut -d' ' -f1-3 /proc/loadavg)"

models=(--models base)
group=()
for seed in $SEEDS; do
  out=runs/adapt-bundles/mtsamples-s$seed
  if [[ ! -f $out/manifest.json ]]; then
    echo "[$(stamp)] start adapt seed $seed"
    t0=$SECONDS
    "$NS" adapt "$DATA_ROOT/mtsamples/mtsamples.csv" --text-column transcription \
      --id-column note_id --label-column medical_specialty \
      --exclude-ids training/configs/mtsamples-eval-ids.txt \
      --out "$out" --work-dir "runs/adapt/mtsamples-s$seed" --seed "$seed" --no-progress \
      $( [[ -d runs/adapt/mtsamples-s$seed ]] && echo --resume )
    echo "[$(stamp)] end adapt seed $seed seconds=$((SECONDS - t0))"
  fi
  models+=(--models "s$seed=$out")
  group+=("s$seed")
done
echo "[$(stamp)] start evaluate ($SUITE, $SPLIT)"
"$NS" evaluate --suite "$SUITE" --split "$SPLIT" --data-root "$DATA_ROOT" "${models[@]}" \
  --group "adapted=$(IFS=,; echo "${group[*]}")" \
  --cache-dir runs/cache --out "runs/eval/adapt-$(basename "$SUITE" .yaml)-$SPLIT"
echo "[$(stamp)] all done"
