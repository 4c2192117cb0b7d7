#!/usr/bin/env python3
"""`braid embed text` against sentence-transformers on the same 1,024 sentences.

Both run as child processes in one invocation of this script, with 2 threads, batch 32 and
max length 128; it prints each side's encode throughput (model loading excluded), end-to-end
wall time, peak resident memory (from wait4's rusage), the throughput ratio braid / ST, and
the max abs difference of the two embedding matrices.

    cargo build --release -p braid-cli
    /work/venv/bin/python bench/embed_text.py [--model ~/.cache/braid/models/minilm]

Needs: sentence-transformers, torch, numpy (a developer machine, not CI).
"""
import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, BATCH, THREADS, MAX_LEN = 1024, 32, 2, 128

WORDS = ("the a model learns features from images text audio and sensors while optimiser updates weights "
         "after each batch of examples drawn at random shuffled dataset many thousands labelled samples "
         "collected over several years café naïve zürich 東京 données réseau neuronal").split()

ST_CHILD = r"""
import sys, time, torch, numpy as np
torch.set_num_threads(int(sys.argv[4]))
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
m.max_seq_length = int(sys.argv[5])
texts = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
t = time.perf_counter()
e = m.encode(texts, batch_size=int(sys.argv[6]), convert_to_numpy=True)
dt = time.perf_counter() - t
np.save(sys.argv[3], e.astype(np.float32))
print(f"embedded {len(texts)} texts in {dt:.2f} s", file=sys.stderr)
"""


def sentences():
    rng = random.Random(0)
    out = []
    for i in range(N):
        n = rng.choice([4, 8, 12, 16, 24, 32, 48, 64, 96, 160])  # the last exceed 128 tokens
        out.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
    return out


def run(cmd, env):
    """-> (wall seconds, peak RSS MiB, stderr)"""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, err


def encode_seconds(stderr):
    m = re.search(r"embedded (\d+) texts in ([0-9.]+) s", stderr)
    if not m:
        sys.exit(f"no throughput line in:\n{stderr}")
    return float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/braid/models/minilm"))
    ap.add_argument("--braid", default=os.path.join(ROOT, "target", "release", "braid"))
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               MKL_NUM_THREADS=str(THREADS), TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "s.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences()) + "\n")
        b_out, s_out = os.path.join(tmp, "b.npy"), os.path.join(tmp, "s.npy")
        b_wall, b_rss, b_err = run([args.braid, "embed", "text", "--model", args.model, "--input", txt, "--out", b_out,
                                    "--batch-size", str(BATCH), "--max-length", str(MAX_LEN)], env)
        s_wall, s_rss, s_err = run([sys.executable, "-c", ST_CHILD, args.model, txt, s_out, str(THREADS),
                                    str(MAX_LEN), str(BATCH)], env)
        b_enc, s_enc = encode_seconds(b_err), encode_seconds(s_err)
        diff = float(np.abs(np.load(b_out) - np.load(s_out)).max())
    trunc = re.search(r"warning: (\d+) of", b_err)
    print(f"{N} sentences, batch {BATCH}, {THREADS} threads, max length {MAX_LEN}"
          f" ({trunc.group(1) if trunc else 0} truncated)")
    print(f"braid embed text:      {N / b_enc:8.1f} sentences/s encode, {b_wall:6.2f} s wall, peak RSS {b_rss:7.1f} MiB")
    print(f"sentence-transformers: {N / s_enc:8.1f} sentences/s encode, {s_wall:6.2f} s wall, peak RSS {s_rss:7.1f} MiB")
    print(f"throughput ratio braid / sentence-transformers: {s_enc / b_enc:.2f} (encode), "
          f"{s_wall / b_wall:.2f} (end to end); max abs diff of embeddings {diff:.2e}")


if __name__ == "__main__":
    main()
