#!/usr/bin/env bash
# OneLLM-style progressive alignment in Braid (recipes/onellm/*.toml), end to end: makes the
# three conversation datasets, trains stage I (image), II (+ audio), III (+ IMU) and the joint
# instruction tuning, and after each stage scores every modality seen so far on held-out
# data, so forgetting shows. Scores go to runs/onellm-eval/<stage>-<what>.json.
#
# After an `align` stage the model captions ("a person walking upstairs", "a voice with a
# Scottish accent saying seven", "a blue circle"): its held-out captions are scored, exact
# match. After instruction tuning, the questions are (activity of the HAPT window, the digit
# spoken, easy-VQA's questions).
#
#   scripts/onellm.sh            # everything (needs `braid fetch smollm2 easy-vqa hapt`, jq,
#                                # espeak-ng and sox)
#   STAGES="instruct" scripts/onellm.sh   # some stages only, from the runs already there
# A stage whose model is there already (runs/onellm-<stage>/model) is only scored.
#   EVERY=4 scripts/onellm.sh    # score every 4th held-out sample (quicker)
set -euo pipefail
cd "$(dirname "$0")/.."

BRAID=${BRAID:-target/release/braid}
STAGES=${STAGES:-"data image audio imu instruct"}
EVERY=${EVERY:-4}
OUT=runs/onellm-eval
mkdir -p "$OUT"

[ -x "$BRAID" ] || cargo build --release -p braid-cli

# score STAGE NAME FILE [flags...]: the stage's model on FILE, one JSON line into
# $OUT/STAGE-NAME.json (and every answer beside its truth into .answers.jsonl).
score() {
  local stage=$1 name=$2 file=$3
  shift 3
  echo -n "$stage $name: "
  "$BRAID" eval "$file" --model "runs/onellm-$stage/model" --out "$OUT/$stage-$name.json" \
    --answers "$OUT/$stage-$name.answers.jsonl" "$@" | tail -1
}

captions() {
  local stage=$1
  shift
  for m in "$@"; do
    case $m in
      image) score "$stage" image-captions runs/data/easy-vqa/captions_test.json --every "$EVERY" ;;
      audio)
        score "$stage" audio-captions runs/data/spoken-digits/captions_test.json --every "$EVERY"
        # The caption names the accent too ("a voice with a Scottish accent saying seven"),
        # which test voices need not give away: the digit alone, its last word.
        echo -n "$stage audio-captions, digit right: "
        jq -s '[.[] | (.answer | split(" ") | last) == (.truth | split(" ") | last)]
          | (map(select(.)) | length) / length' "$OUT/$stage-audio-captions.answers.jsonl"
        ;;
      imu) score "$stage" imu-captions runs/data/hapt-chat/captions_test.json --every "$((EVERY * 4))" ;;
    esac
  done
}

# train STAGE: recipes/onellm/STAGE.toml, unless its model is there.
train() {
  [ -f "runs/onellm-$1/model/pipeline.toml" ] || "$BRAID" train "recipes/onellm/$1.toml"
}

for stage in $STAGES; do
  start=$(date +%s)
  case $stage in
    data)
      [ -f runs/data/easy-vqa/captions_test.json ] || "$BRAID" data make easy-vqa --out runs/data/easy-vqa
      [ -f runs/data/hapt-chat/captions_test.json ] || "$BRAID" data make hapt-chat --out runs/data/hapt-chat --force
      [ -f runs/data/hapt-chat-s512/train.json ] || "$BRAID" data make hapt-chat --out runs/data/hapt-chat-s512 --stride 512 --force
      [ -f runs/data/hapt-chat-s256/train.json ] || "$BRAID" data make hapt-chat --out runs/data/hapt-chat-s256 --stride 256 --force
      [ -f runs/data/spoken-digits/captions_test.json ] || "$BRAID" data make spoken-digits --out runs/data/spoken-digits --force
      ;;
    image)
      train image
      captions image image
      ;;
    audio)
      train audio
      captions audio image audio
      ;;
    imu)
      train imu
      captions imu image audio imu
      ;;
    instruct)
      train instruct
      score instruct imu-activity runs/data/hapt-chat/test.json --type activity --every "$((EVERY * 2))"
      score instruct audio-digit runs/data/spoken-digits/test.json
      echo -n "instruct image-vqa: "
      "$BRAID" eval vqa --model runs/onellm-instruct/model --limit 100 \
        --out "$OUT/instruct-image-vqa.json" | tail -1
      captions instruct image audio imu
      # Router weights per modality and expert over 60 held-out items of each modality.
      jq -s '(.[0] | map(.imu = "../data/hapt-chat/" + .imu) | .[0:60])
        + (.[1] | map(.audio = "../data/spoken-digits/" + .audio) | .[0:60]) + (.[2] | .[0:60])' \
        runs/data/hapt-chat/captions_test.json runs/data/spoken-digits/captions_test.json \
        runs/data/easy-vqa/captions_test.json > "$OUT/routing.json"
      "$BRAID" routing "$OUT/routing.json" --model runs/onellm-instruct/model --limit 0 \
        --png "$OUT/routing.png"
      ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
  echo "== $stage: $(( $(date +%s) - start )) s"
done
