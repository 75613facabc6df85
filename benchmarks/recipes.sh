#!/usr/bin/env bash
# The field's recipes on one network, each at the same total budget (6 epochs of training, the
# dense warm-up included) and the same target (10% of the weights), then the report and the
# ticket ablations (issue 27). One seed: a first look, not a study (that is issue 28's).
#   bash benchmarks/recipes.sh [OUT]            LeNet-300-100 on Fashion-MNIST (minutes)
#   QUICK=1 bash benchmarks/recipes.sh [OUT]    digits, a fraction of an epoch each (seconds)
set -euo pipefail
OUT=${1:-output/recipes}
PY=${PYTHON:-python}
if [[ -n "${QUICK:-}" ]]; then
  DATA=(--net_dataset digits); TRIALS=2
else
  DATA=(--net_dataset FashionMNIST); TRIALS=3
fi
COMMON=("${DATA[@]}" --net_arch lenet300 --net_lr 0.05 --net_momentum 0.9 --seed 0 --quiet
        --output_dir "$OUT")
IMP=(--prune_method lth --prune_rule global --prune_ratio 0.44 --prune_target_remaining 10
     --exper_imp_total_iter 5 --net_warmup 1 --net_train_epochs 1)
run() { echo "== $*" >&2; "$PY" -m incop run "${COMMON[@]}" "$@"; }

run "${IMP[@]}" --ticket_epochs 2 --run_name weight_rewinding
run "${IMP[@]}" --rewind_to none --run_name fine_tuning
run "${IMP[@]}" --rewind_to none --net_lr_schedule linear --run_name lr_rewinding
run "${IMP[@]}" --rewind_to none --net_lr_schedule linear --net_lr_allr --run_name budgeted_allr
run --prune_method gmp --prune_rule global --gmp_start 0.5ep --gmp_end 3.5ep --gmp_every 0.5ep \
    --prune_target_remaining 10 --net_warmup 1 --net_train_epochs 5 --ticket_epochs 2 \
    --run_name gmp
run --prune_method lth --prune_rule global --prune_ratio 0.9 --prune_target_remaining 10 \
    --exper_imp_total_iter 2 --net_warmup 0 --net_train_epochs 3 --rewind_to none \
    --run_name one_shot
"$PY" -m incop ablate "$OUT" --trials "$TRIALS" --quiet
"$PY" -m incop report "$OUT" --output "$OUT/report"
