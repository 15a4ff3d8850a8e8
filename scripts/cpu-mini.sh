#!/usr/bin/env bash
# Every cpu-mini sweep, then its report into docs/results/cpu-mini/. About an hour on 2 CPU cores
# (about 2 hours in total with bit-xor, whose random-init runs need ~3,000 steps each).
# Re-running skips finished runs. Usage: bash scripts/cpu-mini.sh [sweep names...]
set -euo pipefail
cd "$(dirname "$0")/.."
sweeps=("${@:-bit-xor mnist listops lr-sweep bit-memory npz fast-defaults}")
for name in ${sweeps[@]}; do
  if [[ "$name" = listops || "$name" = fast-defaults ]] && [ ! -f runs/data/listops-mini/basic_test.tsv ]; then
    fpt data listops --out runs/data/listops-mini --n-train 8000 --n-val 500 --n-test 1000 \
      --min-length 20 --max-length 100 --max-depth 4 --no-progress
  fi
  if [ "$name" = npz ] && [ ! -f runs/data/sine.npz ]; then
    python examples/make_npz_example.py --out runs/data
  fi
  fpt sweep "configs/cpu-mini/$name.yaml" --out "runs/cpu-mini/$name" --workers 1 --no-progress
  fpt report "runs/cpu-mini/$name" --out "docs/results/cpu-mini/$name"
done
