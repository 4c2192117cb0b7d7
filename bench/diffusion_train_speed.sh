#!/usr/bin/env bash
# Training speed of the easy-VQA generator (recipes/draw/generator.toml: UNet + CLIP text
# encoder at 32x32, batch 16), Braid against PyTorch + diffusers on the same model, same
# machine, same run, threads pinned alike. Braid's figure is `braid train`'s own samples/s
# over STEPS steps including its first (warm-up) steps; PyTorch's excludes 3 warm-up steps.
#   PYTHON=/path/to/venv/bin/python bench/diffusion_train_speed.sh [STEPS=30] [THREADS=2]
# Needs `braid data make easy-vqa --out runs/data/easy-vqa` and a venv with torch,
# diffusers and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
BRAID=${BRAID:-target/release/braid}
PYTHON=${PYTHON:-python3}
steps=${1:-30}
threads=${2:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s/^max_steps = .*/max_steps = $steps/" -e 's/^eval_every = .*/eval_every = 100000/' \
    -e 's/^checkpoint_every = .*/checkpoint_every = 100000/' -e "s#^out_dir = .*#out_dir = \"$tmp/run\"#" \
    -e "s#\.\./\.\./runs#$PWD/runs#" recipes/draw/generator.toml > "$tmp/recipe.toml"
RAYON_NUM_THREADS=$threads "$BRAID" train "$tmp/recipe.toml" --quiet > "$tmp/out.json" 2> "$tmp/err"
rate=$(grep -o '([0-9.]* samples/s)' "$tmp/err" | grep -o '[0-9.]*' | head -1)
braid=$(jq -nc --argjson r "$rate" --argjson t "$threads" --argjson s "$steps" \
    '{tool: "braid", threads: $t, batch: 16, steps: $s, samples_per_s: $r}')
echo "$braid"
py=$("$PYTHON" bench/diffusion_train_speed.py "$tmp/run/model/generator" "$steps" 16 "$threads")
echo "$py"
jq -nc --argjson p "$py" --argjson b "$braid" '{braid_over_pytorch: ($b.samples_per_s / $p.samples_per_s)}'
