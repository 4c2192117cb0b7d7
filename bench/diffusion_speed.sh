#!/usr/bin/env bash
# Sampling speed, diffusers against Braid on the same diffusers-layout folder (see
# bench/diffusion_speed.py). Prints one JSON line per tool and the ratio.
#   PYTHON=/tmp/pyref/bin/python bench/diffusion_speed.sh FOLDER [STEPS=50] [IMAGES=10]
set -euo pipefail
BRAID=${BRAID:-target/release/braid}
PYTHON=${PYTHON:-python3}
folder=$1
steps=${2:-50}
images=${3:-10}
tmp=$(mktemp -d)
py=$("$PYTHON" "$(dirname "$0")/diffusion_speed.py" "$folder" "$steps" "$images")
echo "$py"
# Braid: a warm-up image, then IMAGES images; its own per-image figure excludes loading.
/usr/bin/time -f "%M" -o "$tmp/rss" "$BRAID" draw --model "$folder" "a red circle" -n $((images + 1)) \
    --steps "$steps" --guidance 3 --out-dir "$tmp" > /dev/null 2> "$tmp/err"
per=$(grep -o '([0-9.]* s an image)' "$tmp/err" | grep -o '[0-9.]*' | head -1)
rss=$(($(cat "$tmp/rss") / 1024))
braid=$(jq -nc --argjson s "$per" --argjson r "$rss" --argjson st "$steps" --argjson n "$((images + 1))" \
    '{tool: "braid", seconds_per_image: $s, peak_rss_mb: $r, steps: $st, images: $n}')
echo "$braid"
jq -nc --argjson p "$py" --argjson b "$braid" \
    '{speedup_vs_diffusers: ($p.seconds_per_image / $b.seconds_per_image)}'
rm -rf "$tmp"
