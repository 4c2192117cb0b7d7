#!/usr/bin/env bash
# Support sets of SuS-X and CapS-Adapter for a target image folder, made by Braid's own
# models (issue 15):
#
# - SuS-X (name-only): N images per class drawn by the text-to-image generator from the
#   class-name prompt (TEMPLATE with {} replaced by the class name) -> OUT/sus/train/<class>/
# - CapS-Adapter: every training image of DATA captioned by the easy-VQA multimodal LLM
#   ("what color is the shape?", "what shape is in the image?" -> "a COLOUR SHAPE"), and
#   images regenerated from the captions by the same generator -> OUT/caps.json (the
#   {"image", "caption", "regenerated"} list `braid adapt --caps` reads). The generator
#   draws a bank of N images per distinct prompt (OUT/bank/<prompt>/), shared by both:
#   the i-th training image with caption c gets the (i mod N)-th image of c's bank.
#
#   scripts/adapt_support.sh DATA OUT [TEMPLATE="a {}"] [N=16]
#
# GENERATOR (default runs/draw/generator/model, the #20 generator), CAPTIONER (default
# models/easyvqa), STEPS (25) and GUIDANCE (2) as in scripts/draw_check.sh. Needs jq.
set -euo pipefail
BRAID=${BRAID:-target/release/braid}
GENERATOR=${GENERATOR:-runs/draw/generator/model}
CAPTIONER=${CAPTIONER:-models/easyvqa}
STEPS=${STEPS:-25}
GUIDANCE=${GUIDANCE:-2}
data=$1
out=$2
template=${3:-a \{\}}
n=${4:-16}
mkdir -p "$out/sus/train"
out=$(realpath "$out")
bank_root=${BANK:-$out/bank}
mkdir -p "$bank_root"
bank_root=$(realpath "$bank_root")

slug() { echo "$1" | tr -c 'a-zA-Z0-9\n' '-' | tr 'A-Z' 'a-z'; }
# bank PROMPT: draws N images for PROMPT once; prints the bank folder.
bank() {
    local dir="$bank_root/$(slug "$1")"
    if [ ! -d "$dir" ] || [ "$(find "$dir" -name '*.png' | wc -l)" -lt "$n" ]; then
        mkdir -p "$dir"
        "$BRAID" draw --model "$GENERATOR" --out-dir "$dir" -n "$n" --steps "$STEPS" \
            --guidance "$GUIDANCE" "$1" > /dev/null
    fi
    echo "$dir"
}

classes=$(ls "$data/train")
[ -f "$data/classes.txt" ] && classes=$(cat "$data/classes.txt")
cp "$data/classes.txt" "$out/sus/" 2>/dev/null || true

# SuS-X: one bank per class-name prompt.
for c in $classes; do
    prompt=${template//\{\}/${c//_/ }}
    echo "SuS-X: $c <- \"$prompt\""
    dir=$(bank "$prompt")
    mkdir -p "$out/sus/train/$c"
    cp "$dir"/*.png "$out/sus/train/$c/"
done

# CapS: caption every training image with the multimodal LLM.
for c in $classes; do
    for f in "$data/train/$c"/*; do
        img=$(realpath "$f")
        id="$c/$(basename "$f")"
        jq -nc --arg img "$img" --arg id "$id" '
          [{id: ($id + "_color"), image: $img, conversations: [
              {from: "human", value: "<image>\nwhat color is the shape?"}, {from: "gpt", value: "?"}]},
           {id: ($id + "_shape"), image: $img, conversations: [
              {from: "human", value: "<image>\nwhat shape is in the image?"}, {from: "gpt", value: "?"}]}]'
    done
done | jq -s 'add' > "$out/captions_questions.json"
"$BRAID" eval "$out/captions_questions.json" --model "$CAPTIONER" --batch 8 \
    --answers "$out/captions_answers.jsonl" > /dev/null
# id -> "a COLOUR SHAPE", in training-image order.
jq -s -r 'map({img: (.id | sub("_(color|shape)$"; "")), kind: (.id | capture("_(?<k>color|shape)$").k), a: .answer})
          | group_by(.img) | map({img: .[0].img, caption: ("a " + (map(select(.kind == "color"))[0].a) + " "
                                                             + (map(select(.kind == "shape"))[0].a))})
          | .[] | [.img, .caption] | @tsv' "$out/captions_answers.jsonl" > "$out/captions.tsv"

declare -A used
while IFS=$'\t' read -r img caption; do
    dir=$(bank "$caption")
    k=${used[$caption]:-0}
    used[$caption]=$((k + 1))
    file=$(ls "$dir"/*.png | sort | sed -n "$((k % n + 1))p")
    jq -nc --arg image "$(realpath "$data/train/$img")" --arg caption "$caption" \
        --arg regenerated "$file" '{image: $image, caption: $caption, regenerated: $regenerated}'
done < "$out/captions.tsv" | jq -s '.' > "$out/caps.json"
echo "wrote $out/sus ($(find "$out/sus/train" -name '*.png' | wc -l) images) and $out/caps.json" \
     "($(jq length "$out/caps.json") captions, $(cut -f2 "$out/captions.tsv" | sort -u | wc -l) distinct)"
