#!/usr/bin/env bash
# Data-parallel scaling on this machine (issue 22): one recipe trained by one process
# (2 threads, then 1 thread) and by `mpirun -np 2` (1 thread each), same global batch,
# same steps; prints samples/s of each, the speed-up of 2 processes over 1, and the
# all-reduce time per step (from metrics.jsonl), as a Markdown table.
#
#   cargo build --release -p braid-cli --features mpi
#   bench/dist_scaling.sh [RECIPE=recipes/hapt/cnn.toml] [STEPS=300]
#
# Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev libclang-dev) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
BRAID=${BRAID:-target/release/braid}
recipe=${1:-recipes/hapt/cnn.toml}
steps=${2:-300}
out=${OUT:-runs/bench/dist}
mkdir -p "$out"
# The recipe cut to STEPS steps, no evaluation or checkpoint until the end.
cut=$out/recipe.toml
sed -E -e "s/^epochs = .*/max_steps = $steps/" -e "s/^max_steps = .*/max_steps = $steps/" \
    -e 's/^eval_every = .*/eval_every = 0/' -e 's/^checkpoint_every = .*/checkpoint_every = 0/' \
    -e 's/^log_every = .*/log_every = 10/' "$recipe" > "$cut"
# Paths in the recipe are relative to it: keep it beside the original.
cp "$cut" "$(dirname "$recipe")/.dist_scaling.toml"
trap 'rm -f "$(dirname "$recipe")/.dist_scaling.toml"' EXIT
cut="$(dirname "$recipe")/.dist_scaling.toml"

run() { # name threads procs
    local dir=$out/$1
    if [ "$3" = 1 ]; then
        RAYON_NUM_THREADS=$2 "$BRAID" train "$cut" --quiet --overwrite --out-dir "$dir" > /dev/null
    else
        mpirun --allow-run-as-root --oversubscribe -np "$3" -x RAYON_NUM_THREADS="$2" \
            "$BRAID" train "$cut" --quiet --overwrite --out-dir "$dir" < /dev/null > /dev/null
    fi
    jq -s --arg name "$1" 'map(select(.split == "train")) | last
        | {name: $name, samples_per_s, allreduce_ms: ((.allreduce_s_per_step // 0) * 1000), loss}' \
        "$dir/metrics.jsonl"
}

{
    run one-2threads 2 1
    run one-1thread 1 1
    run two-1thread 1 2
} | jq -s -r --arg recipe "$recipe" --arg steps "$steps" '
    (.[0].samples_per_s) as $base
    | "recipe: \($recipe), \($steps) steps\n",
      "| processes x threads | samples/s | vs 1 x 2 | all-reduce ms / step | final loss |",
      "|---|---|---|---|---|",
      (.[] | "| \(.name) | \(.samples_per_s | . * 10 | round / 10) | \(.samples_per_s / $base | . * 100 | round / 100)x | \(.allreduce_ms | . * 1000 | round / 1000) | \(.loss | . * 10000 | round / 10000) |")'
