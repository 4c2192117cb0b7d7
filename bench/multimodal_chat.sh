#!/usr/bin/env bash
# Decode speed of a trained multimodal model next to text-only chat, same machine, same
# run (issue 13): `braid chat` on SmolLM2-135M Q4_1 (text) and `braid chat --image` on the
# committed easy-VQA model (its ViT + projector + LoRA on the same GGUF, opened frozen:
# quantized weights, fused kernels, LoRA beside them). Greedy, EOS ignored, --max-tokens
# tokens each, in rounds of text then image (so load from other processes falls on both
# alike); prints each round's decode tokens/s, the best of each and the ratio image / text.
#
#   bench/multimodal_chat.sh [--threads N] [--tokens N] [--rounds N]
#
# Needs `braid fetch smollm2 easy-vqa`; builds `braid` in release.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2 tokens=64 rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown argument $1 (--threads N --tokens N --rounds N)" >&2; exit 2 ;;
  esac
done
cargo build -q --release -p braid-cli
braid=target/release/braid
image=${BRAID_HOME:-$HOME/.cache/braid}/datasets/easy-vqa/test/images/7.png
[ -f "$image" ] || { echo "easy-VQA not fetched: run \`braid fetch easy-vqa\`" >&2; exit 1; }
export RAYON_NUM_THREADS=$threads

rate() { # the decode tokens/s of one `braid chat --stats` run
  "$braid" chat "$@" --max-tokens "$tokens" --ignore-eos --stats 2>&1 >/dev/null | grep -o '"decode_tok_s":[0-9.]*' | cut -d: -f2
}
best_text=0 best_image=0
for r in $(seq 1 "$rounds"); do
  t=$(rate --model smollm2 "What color is the shape?")
  i=$(rate --model models/easyvqa --image "$image" "what color is the shape?")
  echo "round $r: text $t tokens/s, image $i tokens/s"
  best_text=$(python3 -c "print(max($best_text, $t))")
  best_image=$(python3 -c "print(max($best_image, $i))")
done
python3 -c "print(f'best: text {$best_text:.1f} tokens/s, image {$best_image:.1f} tokens/s, ratio image/text {$best_image / $best_text:.2f}x ($threads threads, $tokens tokens)')"
