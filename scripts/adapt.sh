#!/usr/bin/env bash
# The k-shot table of issue 15 on two target sets that models/easyvqa-clip (a ViT trained
# contrastively against MiniLM on easy-VQA captions) never saw: shapes-shift (easy-VQA's
# 24 colour-shape classes drawn in another style) and Fashion-MNIST. Every method
# (zero-shot, linear probe, Tip-Adapter, Tip-Adapter-F, TIP-X, SuS-X, CapS-Adapter), k =
# 1, 2, 4, 8, 16, 3 samplings each; SuS-X and CapS support sets drawn by the #20 generator
# (scripts/adapt_support.sh). Writes runs/adapt/table-{shapes,fashion}/table.{md,json,png}.
#
#   scripts/adapt.sh            # ~35 min on 2 cores, most of it drawing support images
#
# Needs `braid fetch minilm easy-vqa smollm2`, `sudo apt-get install dataset-fashion-mnist`,
# jq, and the generator of recipes/draw (runs/draw/generator/model; GENERATOR=...).
set -euo pipefail
cd "$(dirname "$0")/.."
BRAID=${BRAID:-target/release/braid}
export BRAID
MODEL=${MODEL:-models/easyvqa-clip}
OUT=${OUT:-runs/adapt}
[ -d "$OUT/shapes" ] || "$BRAID" data make shapes-shift --out "$OUT/shapes"
[ -d "$OUT/fashion" ] || "$BRAID" data make fashion-mnist --out "$OUT/fashion"
scripts/adapt_support.sh "$OUT/shapes" "$OUT/support-shapes" "a {}" 16
# Fashion-MNIST's captions (by a captioner of shapes) reuse the shapes' image bank.
BANK="$OUT/support-shapes/bank" scripts/adapt_support.sh "$OUT/fashion" "$OUT/support-fashion" \
    "a photo of a {}." 16
"$BRAID" adapt table --model "$MODEL" --data "$OUT/shapes" --template "a {}" \
    --support "$OUT/support-shapes/sus" --caps "$OUT/support-shapes/caps.json" \
    --out "$OUT/table-shapes" | tail -9
"$BRAID" adapt table --model "$MODEL" --data "$OUT/fashion" \
    --support "$OUT/support-fashion/sus" --caps "$OUT/support-fashion/caps.json" \
    --out "$OUT/table-fashion" | tail -9
