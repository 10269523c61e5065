#!/usr/bin/env bash
# Reproduces docs/training.md (three adapted encoders) and docs/results.md (issue 6) on the
# MTSamples stand-in: train -> evaluate frozen + fine-tuned -> note-category head, registered
# and promoted. Run from anywhere; outputs go to runs/ (gitignored). A step whose output
# already exists is skipped, so an interrupted run can be started again.
#   MTSAMPLES=path/to/mtsamples.csv FINETUNE_N="16 64" training/scripts/mtsamples_results.sh
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
NS=${NOTESPACE:-.venv/bin/notespace}
DATA=${MTSAMPLES:-../shared/data/mtsamples/mtsamples.csv}
FINETUNE_N=${FINETUNE_N:-16}
DB=${RESULTS_DATABASE_URL:-sqlite:///runs/results-registry.db}
stamp() { date -u '+%F %T'; }
step() {  # step NAME COMMAND...: timed, logged
  local name=$1; shift
  echo "[$(stamp)] start $name"
  local t0=$SECONDS
  "$@"
  echo "[$(stamp)] end $name seconds=$((SECONDS - t0))"
}

for objective in mlm declutr category; do
  if [[ ! -f runs/mtsamples-$objective/final/lineage.json ]]; then
    step "train-$objective" "$NS" train "$objective" \
      --config "training/configs/mtsamples-$objective.yaml" --no-progress
  fi
done

TEST=runs/mtsamples-declutr/test_note_ids.txt  # identical in all three runs (same split seed)
common=(--data "$DATA" --format mtsamples --test-ids "$TEST" --threads 2)
finetune=()
for n in $FINETUNE_N; do finetune+=(--finetune-n "$n"); done
step evaluate "$NS" evaluate \
  --models base-MiniLM=base --models mlm=runs/mtsamples-mlm/final \
  --models declutr=runs/mtsamples-declutr/final --models category=runs/mtsamples-category/final \
  "${common[@]}" --task label --export-max-tokens 256 \
  --n 16 --n 64 --n 128 --n all --seeds 5 --min-per-class 128 \
  "${finetune[@]}" --finetune-seeds 5 --finetune-epochs 4 --finetune-max-length 256 \
  --out runs/eval/label

# The served note-category head: base encoder, softmax head on frozen embeddings, registered
# as a new version and promoted in a registry of its own (the service reads the same table).
BASE_BUNDLE=runs/bundles/all-MiniLM-L6-v2
[[ -f $BASE_BUNDLE/manifest.json ]] || step export-base "$NS" export --out "$BASE_BUNDLE"
NOTESPACE_DATABASE_URL=$DB "$NS" db upgrade
step head "$NS" head train --bundle "$BASE_BUNDLE" "${common[@]}" \
  --out runs/bundles/all-MiniLM-L6-v2-head --version 1+head --overwrite \
  --register --database-url "$DB"
NOTESPACE_DATABASE_URL=$DB "$NS" models promote all-MiniLM-L6-v2@1+head
NOTESPACE_DATABASE_URL=$DB "$NS" models list
echo "[$(stamp)] all done"
