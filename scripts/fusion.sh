#!/usr/bin/env bash
# The fusion suite (issue #21): every method of braid-fusion, and the unimodal baselines,
# on both datasets over 3 seeds. Each arm is the dataset's base recipe
# (recipes/fusion/<dataset>.toml) with its method, seed and inputs changed; each trained
# model is scored as it is, with each input missing, and over the noise sweep
# (`braid eval --robustness`). `impute-transfer` fuses the seed's two unimodal baselines'
# encoders, frozen, with an imputer (run uni-a and uni-b first). One JSON line per run goes to runs/fusion/results.jsonl;
# scripts/fusion_table.sh turns it into the table.
#   scripts/fusion.sh                                   # everything (about 70 min on 2 cores)
#   DATASETS=hapt SEEDS=0 ARMS="early lmf" scripts/fusion.sh
# Needs jq, and the datasets (after `braid fetch hapt mnist`): braid data make hapt-fusion --out runs/data/hapt-fusion;
# braid data make av-digits --out runs/data/av-digits.
set -euo pipefail
cd "$(dirname "$0")/.."

BRAID=${BRAID:-target/release/braid}
DATASETS=${DATASETS:-"hapt av-digits"}
SEEDS=${SEEDS:-"0 1 2"}
ARMS=${ARMS:-"uni-a uni-b early late late-learned weighted-sum attention tfn lmf mult autoencoder vote average stacking shared-contrastive shared-adversarial impute-autoencoder impute-adversarial impute-transfer"}
OUT=runs/fusion
RESULTS=$OUT/results.jsonl
command -v jq >/dev/null || { echo "fusion.sh needs jq (apt-get install jq)" >&2; exit 1; }
mkdir -p "$OUT/recipes"

# The dataset's directory.
datadir() {
  case $1 in
    hapt) echo runs/data/hapt-fusion ;;
    *) echo "runs/data/$1" ;;
  esac
}

# The dataset's two inputs, in order.
inputs() {
  case $1 in
    hapt) echo "acc gyro" ;;
    av-digits) echo "image audio" ;;
  esac
}

# method ARM: the [model.method] table, and extra lines for [model] / the top level.
method() {
  case $1 in
    uni-a | uni-b | late) echo 'type = "late"' ;;
    late-learned) printf 'type = "late"\nweights = "learned"' ;;
    weighted-sum) echo 'type = "weighted_sum"' ;;
    mult) printf 'type = "mult"\nlayers = 1\nheads = 4' ;;
    autoencoder) printf 'type = "autoencoder"\nlatent = 64' ;;
    vote | average | stacking) printf 'type = "ensemble"\ncombine = "%s"' "$1" ;;
    shared-contrastive) printf 'type = "shared"\nobjective = "contrastive"' ;;
    shared-adversarial) printf 'type = "shared"\nobjective = "adversarial"' ;;
    impute-*) echo 'type = "early"' ;;
    *) echo "type = \"$1\"" ;;
  esac
}

# recipe DATASET ARM SEED > the arm's recipe (paths made absolute-free: it lives in
# $OUT/recipes, so data.path is relative to there).
recipe() {
  local ds=$1 arm=$2 seed=$3 a b drop=""
  read -r a b <<<"$(inputs "$ds")"
  case $arm in
    uni-a) drop=$b ;;
    uni-b) drop=$a ;;
  esac
  awk -v drop="$drop" -v arm="$arm" -v keep="${arm#uni-}" -v a="$a" -v b="$b" '
    /^\[/ { skip = ($0 == "[model.method]" || (drop != "" && $0 == "[model.encoders." drop "]")) }
    skip { next }
    /^out_dir = / { print "out_dir = \"runs/fusion/'"$ds"'/" arm "-s'"$seed"'\""; next }
    /^path = / { print "path = \"../../../'"$(datadir "$ds")"'\""; if (drop != "") print "inputs = [\"" (drop == b ? a : b) "\"]"; next }
    /^hidden = / {
      print
      if (arm == "impute-transfer") {
        print "impute = \"autoencoder\""
        print "init = [\"../'"$ds"'/uni-a-s'"$seed"'/model\", \"../'"$ds"'/uni-b-s'"$seed"'/model\"]"
        print "freeze_encoders = true"
      } else if (arm ~ /^impute-/) print "impute = \"" substr(arm, 8) "\""
      next
    }
    /^seed = / { print "seed = '"$seed"'"; next }
    { print }
  ' "recipes/fusion/$ds.toml"
  printf '\n[model.method]\n%s\n' "$(method "$arm")"
}

for ds in $DATASETS; do
  for seed in $SEEDS; do
    for arm in $ARMS; do
      run=$OUT/$ds/$arm-s$seed
      r=$OUT/recipes/$ds-$arm-s$seed.toml
      recipe "$ds" "$arm" "$seed" >"$r"
      if [ ! -f "$run/model/pipeline.toml" ]; then
        "$BRAID" train "$r" --quiet --overwrite >"$run.train.json"
      fi
      "$BRAID" eval "$(datadir "$ds")" --model "$run/model" --robustness --out "$run" >"$run.eval.json" 2>/dev/null
      jq -c --arg ds "$ds" --arg arm "$arm" --argjson seed "$seed" \
        --slurpfile t "$run.train.json" \
        '{dataset: $ds, arm: $arm, seed: $seed, accuracy: .metrics.accuracy, macro_f1: .metrics.macro_f1,
          n: .metrics.n, params, method, inputs, train_seconds: $t[0].train_seconds,
          robustness}' "$run/eval.json" | tee -a "$RESULTS" | jq -c '{dataset, arm, seed, accuracy}'
    done
  done
done
