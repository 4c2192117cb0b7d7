#!/usr/bin/env bash
# OneLLM ablations at one small budget (recipes/onellm/ablation/*.toml: 2,000 captions of
# each modality, 6,000 in all): all modalities at once through one shared UPM, the same
# with one MLP projector per modality, and progressive (image, then audio, then IMU) through
# the UPM. Each arm's final model is scored on held-out captions of every modality (exact
# match), into runs/onellm-ablation/<arm>-<modality>.json. Run scripts/onellm.sh's `data`
# stage first (the datasets).
#   scripts/onellm_ablation.sh                 # every arm
#   ARMS="joint-mlp" scripts/onellm_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BRAID=${BRAID:-target/release/braid}
ARMS=${ARMS:-"joint-upm joint-mlp progressive"}
EVERY=${EVERY:-4}
R=recipes/onellm/ablation
OUT=runs/onellm-ablation

score() {
  local arm=$1 model=$2
  for m in image audio imu; do
    case $m in
      image) file=runs/data/easy-vqa/captions_test.json; every=$EVERY ;;
      audio) file=runs/data/spoken-digits/captions_test.json; every=$EVERY ;;
      imu) file=runs/data/hapt-chat/captions_test.json; every=$((EVERY * 4)) ;;
    esac
    echo -n "$arm $m: "
    "$BRAID" eval "$file" --model "$model" --every "$every" --out "$OUT/$arm-$m.json" \
      --answers "$OUT/$arm-$m.answers.jsonl" | tail -1
  done
}

# train RECIPE RUN: $R/RECIPE.toml, unless $OUT/RUN/model is there (then only scored).
train() {
  [ -f "$OUT/$2/model/pipeline.toml" ] || "$BRAID" train "$R/$1.toml"
}

for arm in $ARMS; do
  start=$(date +%s)
  case $arm in
    joint-upm) train joint_upm joint-upm; model=$OUT/joint-upm/model ;;
    joint-mlp) train joint_mlp joint-mlp; model=$OUT/joint-mlp/model ;;
    progressive)
      train progressive_1_image progressive-1-image
      train progressive_2_audio progressive-2-audio
      train progressive_3_imu progressive-3-imu
      model=$OUT/progressive-3-imu/model
      ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
  echo "== $arm trained in $(( $(date +%s) - start )) s"
  score "$arm" "$model"
done
