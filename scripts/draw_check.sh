#!/usr/bin/env bash
# Judges a text-to-image model on easy-VQA's 8 colours x 3 shapes: it draws "a {colour}
# {shape}" with SEEDS seeds each, and the easy-VQA model (models/easyvqa: a ViT + SmolLM2
# trained on real easy-VQA images, sharing no code with the generator) is asked "what
# color is the shape?" and "what shape is in the image?" about every image. An image
# passes when both answers are the asked ones. As a baseline for the judge at the
# generator's resolution, the same questions are asked about 240 real easy-VQA test images
# area-resized to SIZE px (ffmpeg; at 64 -> 32 the 2x2 box mean the generator's training
# images had). Every judged image (generated or real) is first scaled to the judge's 64 px
# by nearest neighbour (JUDGE_PX), so both reach the judge the same way, with crisp edges.
#
#   scripts/draw_check.sh MODEL_DIR OUT_DIR [SEEDS=10] [STEPS=50] [GUIDANCE=3]
#
# SEED0 (default 0) is the first seed; REAL=0 skips the real-image baseline; DRAWN=1 judges
# the images already in OUT_DIR/images instead of drawing them again.
#
# Writes OUT_DIR/{images/, judged/, grid.png (a row per prompt), check.json, answers.jsonl,
# real/, summary.json}; prints summary.json. Needs jq, ffmpeg, bc,
# `braid fetch easy-vqa smollm2`, and `braid data make easy-vqa --out runs/data/easy-vqa`.
set -euo pipefail
BRAID=${BRAID:-target/release/braid}
JUDGE=${JUDGE:-models/easyvqa}
EASYVQA=${EASYVQA:-runs/data/easy-vqa}
model=$1
out=$2
seeds=${3:-10}
steps=${4:-50}
guidance=${5:-3}
size=${SIZE:-32}
seed0=${SEED0:-0}
judge_px=${JUDGE_PX:-64}
to_judge() { # in out
    ffmpeg -loglevel error -y -i "$1" -vf "scale=${judge_px}:${judge_px}:flags=neighbor" "$2" < /dev/null
}
colors=(red green blue black gray teal brown yellow)
shapes=(circle rectangle triangle)
mkdir -p "$out"
prompts=()
for c in "${colors[@]}"; do for s in "${shapes[@]}"; do prompts+=("a $c $s"); done; done

start=$(date +%s.%N)
[ "${DRAWN:-0}" = 1 ] || "$BRAID" draw --model "$model" --out-dir "$out/images" -n "$seeds" --seed "$seed0" --steps "$steps" \
    --guidance "$guidance" --grid "$out/grid.png" "${prompts[@]}" > "$out/drawn.txt"
draw_s=$(echo "$(date +%s.%N) - $start" | bc)

# Two questions per image, ids <image>_color and <image>_shape (the question type).
questions() { # file colour shape id
    jq -nc --arg img "$(realpath "$1")" --arg c "$2" --arg s "$3" --arg id "$4" '
      [{id: ($id + "_color"), image: $img, conversations: [
          {from: "human", value: "<image>\nwhat color is the shape?"}, {from: "gpt", value: $c}]},
       {id: ($id + "_shape"), image: $img, conversations: [
          {from: "human", value: "<image>\nwhat shape is in the image?"}, {from: "gpt", value: $s}]}]'
}
score() { # dir-with-check.json
    "$BRAID" eval "$1/check.json" --model "$JUDGE" --batch 8 --answers "$1/answers.jsonl" > "$1/eval.json"
    jq -s 'map({img: (.id | sub("_(color|shape)$"; "")), ok: ((.answer | ascii_downcase) == (.truth | ascii_downcase)),
                kind: (.id | capture("_(?<k>color|shape)$").k)})
           | {images: (group_by(.img) | length),
              pass: (group_by(.img) | map(all(.ok)) | map(select(.)) | length),
              color: (map(select(.kind == "color")) | (map(select(.ok)) | length) / length),
              shape: (map(select(.kind == "shape")) | (map(select(.ok)) | length) / length)}
           | .pass_rate = (.pass / .images)' "$1/answers.jsonl"
}

mkdir -p "$out/judged"
{
    for c in "${colors[@]}"; do for s in "${shapes[@]}"; do for ((k = seed0; k < seed0 + seeds; k++)); do
        to_judge "$out/images/a-$c-$s-$k.png" "$out/judged/a-$c-$s-$k.png"
        questions "$out/judged/a-$c-$s-$k.png" "$c" "$s" "a-$c-$s-$k"
    done; done; done
} | jq -s 'add' > "$out/check.json"
generated=$(score "$out")

# The judge on real images at the same resolution.
real='null'
if [ "${REAL:-1}" != 0 ]; then
mkdir -p "$out/real/images"
jq -r '.[:240][] | [.image, (.conversations[1].value)] | @tsv' "$EASYVQA/captions_test.json" |
while IFS=$'\t' read -r img caption; do
    set -- $caption # a COLOUR SHAPE
    name=$(basename "$img" .png)
    ffmpeg -loglevel error -y -i "$img" -vf "scale=${size}:${size}:flags=area" "$out/real/images/$name.png" < /dev/null
    to_judge "$out/real/images/$name.png" "$out/real/images/$name-judged.png"
    questions "$out/real/images/$name-judged.png" "$2" "$3" "real-$name"
done | jq -s 'add' > "$out/real/check.json"
real=$(score "$out/real")
fi

jq -n --argjson g "$generated" --argjson r "$real" --arg draw_s "$draw_s" --argjson n "$((24 * seeds))" \
    --arg steps "$steps" --arg guidance "$guidance" \
    '{generated: $g, real_at_generator_size: $r, steps: ($steps | tonumber), guidance: ($guidance | tonumber),
      seconds_per_image: (($draw_s | tonumber) / $n)}' | tee "$out/summary.json"
