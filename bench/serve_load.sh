#!/usr/bin/env bash
# Load test (issue 16): `braid serve` and llama-cpp-python's OpenAI server on the same
# GGUF (SmolLM2-135M-Instruct Q4_1 from `braid fetch smollm2`), the same clients
# (bench/serve_load.py), one after the other in one run, 2 threads each; prints each
# server's JSON line, its peak RSS, and the ratio of generated tokens/s.
#
#   pip install "llama-cpp-python[server]" httpx   # in a venv outside the repo
#   PY=/path/to/venv/bin/python bench/serve_load.sh [--clients 32 --seconds 60 --max-tokens 64]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
THREADS="${THREADS:-2}"
ARGS=("$@")
GGUF=$(ls "${BRAID_HOME:-$HOME/.cache/braid}"/models/smollm2/*.gguf | head -1)
BRAID=target/release/braid
[ -x "$BRAID" ] || cargo build --release -p braid-cli

wait_up() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0; sleep 0.5; done; return 1; }
peak_rss() { awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$1/status"; }

"$BRAID" serve --model "$GGUF" --threads "$THREADS" --port 18181 --max-queue 256 --max-batch 32 2>/dev/null &
B=$!
wait_up 18181 /health
# The model id is what `/v1/models` lists (the path given).
"$PY" bench/serve_load.py --base-url http://127.0.0.1:18181/v1 --model "$GGUF" --label braid "${ARGS[@]}" | tee /tmp/serve_load_braid.json
echo "braid peak RSS: $(peak_rss $B)"
kill $B; wait $B 2>/dev/null || true

"$PY" -m llama_cpp.server --model "$GGUF" --n_threads "$THREADS" --n_ctx 2048 --port 18182 >/dev/null 2>&1 &
L=$!
wait_up 18182 /v1/models
"$PY" bench/serve_load.py --base-url http://127.0.0.1:18182/v1 --model "$GGUF" --label llama-cpp-python "${ARGS[@]}" | tee /tmp/serve_load_llama.json
echo "llama-cpp-python peak RSS: $(peak_rss $L)"
kill $L; wait $L 2>/dev/null || true

"$PY" - <<'PYEOF'
import json
b = json.load(open("/tmp/serve_load_braid.json")); l = json.load(open("/tmp/serve_load_llama.json"))
print(f"generated tokens/s: braid {b['tokens_per_s']} / llama-cpp-python {l['tokens_per_s']} = {b['tokens_per_s'] / max(l['tokens_per_s'], 1e-9):.2f}x")
PYEOF
