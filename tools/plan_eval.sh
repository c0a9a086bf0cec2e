#!/usr/bin/env bash
# The comparison in docs/results/plan.md for one dataset: `compare --plan auto` (no recipe option) against a
# hand-chosen recipe, both arms side by side, one thread each, 3 minutes of training per run.
#   tools/plan_eval.sh <data config> <name> "<hand recipe options>" [out root]
#   tools/plan_eval.sh configs/data/camvid.yaml camvid "--size 256 --batch-size 4 --lr 0.003"
# SEEDS=3 trains seeds 0..2 (finished runs of the same out root are reused).
# Then score both arms at native resolution: python tools/native_eval.py OUT/<name>_plan OUT/<name>_hand
set -euo pipefail
data=$1 name=$2 hand=$3 out=${4:-reports/plan_eval}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 UNETFAMILY_DATA_ROOT=${UNETFAMILY_DATA_ROOT:-../shared/data}
common=(--models fcn8s,unet,unet_plusplus,unet_3plus --seeds "${SEEDS:-1}" --folds 1 --minutes 3 --base-width 8 --no-costs)
mkdir -p "$out"
unetfamily compare --data "$data" "${common[@]}" --out "$out/${name}_plan" > "$out/${name}_plan.log" 2>&1 &
# shellcheck disable=SC2086  # the hand recipe is a list of options
unetfamily compare --data "$data" "${common[@]}" $hand --out "$out/${name}_hand" > "$out/${name}_hand.log" 2>&1 &
wait
