#!/usr/bin/env bash
# Braid vs PyTorch on the easy-VQA stages of SmolLM2-135M-Instruct (issue 8), CPU f32, the
# same shapes and the same thread count on both sides, one after the other:
#   crates/braid-train/examples/vqa_speed.rs  (real GGUF, $BRAID_HOME/models/smollm2)
#   bench/easyvqa_speed.py                    (transformers + peft, random weights)
# Prints a table: throughput of each side and the ratio Braid / PyTorch (> 1: Braid faster).
#
#   bench/easyvqa_speed.sh [--threads N] [--repeats N] [--cases abcdu] [--heads all,labelled]
# (u: the align step with OneLLM's UPM projector of recipes/onellm/image.toml)
#
# --threads (default 1) sets RAYON_NUM_THREADS for Braid and torch.set_num_threads (plus
# OMP/MKL_NUM_THREADS) for PyTorch. --heads: which PyTorch training losses to run, `all`
# (the usual `model(..., labels=...)`: logits at every position) and/or `labelled` (lm_head
# on the labelled rows only, as Braid's `logits_at`). Environment: PYTHON (default
# /work/venv/bin/python), GGUF (a SmolLM2 GGUF instead of the one in $BRAID_HOME), OUT (a
# folder to keep the raw JSON lines in; default a temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=1 repeats=3 cases=abcd heads=all,labelled
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    *) echo "unknown argument $1 (--threads N --repeats N --cases abcd --heads all,labelled)" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-/work/venv/bin/python}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

cargo build -q --release -p braid-train --example vqa_speed
echo "Braid ($threads threads, $repeats repeats) ..." >&2
RAYON_NUM_THREADS=$threads cargo run -q --release -p braid-train --example vqa_speed -- \
  --repeats "$repeats" --cases "$cases" ${GGUF:+--gguf "$GGUF"} > "$out/braid.jsonl"
echo "PyTorch ($threads threads, $repeats repeats) ..." >&2
"$python" bench/easyvqa_speed.py --threads "$threads" --repeats "$repeats" --cases "$cases" \
  --heads "$heads" > "$out/pytorch.jsonl"

"$python" - "$out/braid.jsonl" "$out/pytorch.jsonl" <<'EOF'
import json, sys

def lines(path):
    return [json.loads(l) for l in open(path) if l.startswith("{")]

braid = {r["case"]: r for r in lines(sys.argv[1])}
torch = {}
for r in lines(sys.argv[2]):
    torch[(r["case"], r.get("head", "all"))] = r

# Braid case -> (PyTorch case it is compared with, label).
rows = [
    ("a_align_5img", "a_align_5img", "(a) align, 8 x (5 img + 32 txt)"),
    ("b_align_64img", "b_align_64img", "(b) align, 8 x (64 img + 32 txt)"),
    ("c_instruct", "c_instruct", "(c) instruct, 4 x (5 img + 190 txt), LoRA r8"),
    ("d_eval", "d_eval", "(d) eval, f32 LoRA model"),
    ("d_eval_frozen_q4", "d_eval", "(d) eval, Braid frozen Q4_1 vs PyTorch f32"),
]

def cell(r):
    return f"{r['per_s']:8.2f}" if r else f"{'-':>8}"

def ratio(b, t):
    return f"{b['per_s'] / t['per_s']:6.2f}x" if b and t else f"{'-':>7}"

head = f"{'case':<46} {'unit':<16} {'Braid':>8} {'PyTorch':>8} {'ratio':>7} {'PT rows':>8} {'ratio':>7}"
print(head)
print("-" * len(head))
for bcase, tcase, label in rows:
    b = braid.get(bcase)
    t_all = torch.get((tcase, "all"))
    t_rows = torch.get((tcase, "labelled"))
    if not (b or t_all or t_rows):
        continue
    unit = (b or t_all or t_rows)["unit"]
    print(f"{label:<46} {unit:<16} {cell(b)} {cell(t_all)} {ratio(b, t_all)} {cell(t_rows)} {ratio(b, t_rows)}")
threads = {r["threads"] for r in list(braid.values()) + list(torch.values())}
print(f"\nthreads {sorted(threads)}; per_s from the median of each side's timed repeats; ratio = Braid / PyTorch.")
print("PyTorch: one [batch, seq] forward, logits at every position via labels= (PyTorch column) or")
print("lm_head on the labelled rows only (PT rows column). Braid: one padded batch, logits at the labelled rows.")
EOF
echo "raw JSON lines: $out/braid.jsonl $out/pytorch.jsonl" >&2
