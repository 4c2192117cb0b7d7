#!/usr/bin/env bash
# Decode speed of SmolLM2-135M Q4_1 with a LoRA, CPU, one run, one prompt (greedy, EOS
# ignored): (a) the frozen body, (b) the frozen body with a rank-8 LoRA on all seven
# projections, (c) the trainable body (dequantized f32) with the same seeded LoRA, in
# rounds of (a), (b), (c) one after the other (so load from other processes falls on all
# three alike). Prints each round, each body's best tokens/s and the ratios (b)/(a),
# (b)/(c), (a)/(c).
#   crates/braid-llm/examples/frozen_lora_decode.rs  (the GGUF from `braid fetch smollm2`)
#
#   bench/frozen_lora_decode.sh [--threads N] [--tokens N] [--repeats N] [--gguf PATH]
#
# --threads (default 2) sets RAYON_NUM_THREADS; the other flags go to the example.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --tokens|--repeats|--gguf) pass+=("$1" "$2"); shift 2 ;;
    *) echo "unknown argument $1 (--threads N --tokens N --repeats N --gguf PATH)" >&2; exit 2 ;;
  esac
done

cargo build -q --release -p braid-llm --example frozen_lora_decode
RAYON_NUM_THREADS=$threads target/release/examples/frozen_lora_decode "${pass[@]}"
