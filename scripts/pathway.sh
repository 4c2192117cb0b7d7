#!/usr/bin/env bash
# Multimodal Pathway on HAPT (issue 15): the patch transformer of recipes/hapt/pathway.toml
# with and without the pathway from the easy-VQA ViT, same budget, 3 seeds, on all
# training users (1-21) and on a few (LOW_USERS, default 1-3), tested on users 22-30.
# ARMS: plain (no pathway), pathway (W_aux frozen), pathway-aux (W_aux trained too, M2PT's
# default). One JSON line per run goes to runs/pathway/results.jsonl; the table is printed.
#   scripts/pathway.sh                      # 12 runs
#   ARMS=pathway-aux scripts/pathway.sh
#   SEEDS=0 REGIMES=all scripts/pathway.sh
# Needs jq, `braid fetch hapt` and the committed models/easyvqa.
set -euo pipefail
cd "$(dirname "$0")/.."
BRAID=${BRAID:-target/release/braid}
SEEDS=${SEEDS:-"0 1 2"}
REGIMES=${REGIMES:-"all low"}
ARMS=${ARMS:-"plain pathway"}
LOW_USERS=${LOW_USERS:-"1-3"}
OUT=runs/pathway
mkdir -p "$OUT"
for regime in $REGIMES; do
  for arm in $ARMS; do
    for seed in $SEEDS; do
      name=$regime-$arm-s$seed
      r=recipes/hapt/.pathway-$name.toml
      awk -v arm="$arm" -v regime="$regime" -v low="$LOW_USERS" -v seed="$seed" -v out="$OUT/$name" '
        /^\[/ { skip = (arm == "plain" && $0 == "[model.pathway]") }
        skip { next }
        /^out_dir = / { print "out_dir = \"" out "\""; next }
        /^train_subjects = / && regime == "low" { print "train_subjects = \"" low "\""; next }
        /^seed = / { print "seed = " seed; next }
        /^train_aux = / && arm == "pathway-aux" { print "train_aux = true"; next }
        { print }' recipes/hapt/pathway.toml > "$r"
      "$BRAID" train "$r" --quiet --overwrite > "$OUT/$name.json"
      rm -f "$r"
      lambdas=null
      if [ "$arm" != plain ]; then
        # |λ| of the last checkpoint (the saved model is merged: it has none).
        lambdas=$(python3 -c '
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
import array
vals = []
for k, v in h.items():
    if k.endswith(".pathway.scale"):
        a, b = v["data_offsets"]; vals.append(abs(array.array("f", data[a:b])[0]))
print(json.dumps({"mean_abs": sum(vals) / len(vals), "max_abs": max(vals), "n": len(vals)}))' \
          "$OUT/$name/checkpoints/$(cat "$OUT/$name/checkpoints/latest")/trainable.safetensors")
      fi
      jq -c --arg regime "$regime" --arg arm "$arm" --argjson seed "$seed" --argjson l "$lambdas" \
        '{regime: $regime, arm: $arm, seed: $seed, accuracy, macro_f1, params, lambda: $l}' \
        "$OUT/$name.json" | tee -a "$OUT/results.jsonl"
    done
  done
done
jq -s -r 'group_by(.regime + " " + .arm) | map({regime: .[0].regime, arm: .[0].arm,
    acc: (map(.accuracy * 100)), f1: (map(.macro_f1 * 100))})
  | map(. + {m: (.acc | add / length), f: (.f1 | add / length)}
          | (.acc | length) as $n
          | . + {s: (if $n < 2 then 0 else ((.acc | map(. * .) | add) - $n * .m * .m) / ($n - 1)
                     | if . < 0 then 0 else . end | sqrt end)})
  | "| regime | arm | accuracy % | macro-F1 % | seeds |", "|---|---|---|---|---|",
    (.[] | "| \(.regime) | \(.arm) | \(.m * 10 | round / 10) ± \(.s * 10 | round / 10) | \(.f * 10 | round / 10) | \(.acc | length) |")' \
  "$OUT/results.jsonl"
