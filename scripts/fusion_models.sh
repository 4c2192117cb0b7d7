#!/usr/bin/env bash
# Commits the best fusion model of each dataset (after scripts/fusion.sh): the arm with the
# highest mean test accuracy over the seeds, its seed-0 model, into models/fusion-hapt and
# models/fusion-avdigits with its report (eval.json, confusion.png, robustness.png) and
# demo.safetensors (the first test sample of each class, for `braid demo`).
#   PYTHON=/path/to/python-with-numpy-and-safetensors scripts/fusion_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULTS=runs/fusion/results.jsonl

for ds in hapt av-digits; do
  case $ds in
    hapt) data=runs/data/hapt-fusion; dest=models/fusion-hapt ;;
    av-digits) data=runs/data/av-digits; dest=models/fusion-avdigits ;;
  esac
  arm=$(jq -rs --arg ds "$ds" '[.[] | select(.dataset == $ds)] | group_by(.arm)
    | map({arm: .[0].arm, acc: ([.[].accuracy] | add / length)}) | max_by(.acc) | .arm' "$RESULTS")
  run=runs/fusion/$ds/$arm-s0
  echo "$ds: best arm $arm ($run)"
  rm -rf "$dest"
  cp -r "$run/model" "$dest"
  mkdir -p "$dest/report"
  cp "$run/eval.json" "$run/confusion.png" "$run/robustness.png" "$dest/report/"
  "$PYTHON" - "$data/test.safetensors" "$dest/demo.safetensors" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file, save_file
t = load_file(sys.argv[1])
labels = t["label"]
pick = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
out = {k: np.ascontiguousarray(v[pick]) for k, v in t.items() if k != "group"}
save_file(out, sys.argv[2])
print(f"{sys.argv[2]}: {len(pick)} samples")
PY
done
