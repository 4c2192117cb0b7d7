"""Training speed on HAPT, Braid against PyTorch, same model, data and hyper-parameters,
same machine, one run: `braid train` on a copy of a recipe in recipes/hapt/ cut to a few
epochs, and bench/hapt_torch.py (the same windows, standardisation, model, AdamW, cosine
warmup, clipping) with the same thread count. Prints both samples/s and the ratio.

  cargo build --release -p braid-cli
  python bench/hapt_train.py --encoder cnn --epochs 3 --threads 2
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The PyTorch flags that reproduce each recipe's model and optimiser.
TORCH = {
    "cnn": ["--encoder", "cnn", "--widths", "64,128,128", "--kernel", "7", "--stride", "2", "--lr", "1e-3"],
    "gru": ["--encoder", "gru", "--hidden", "64", "--layers", "1", "--lr", "3e-3"],
    "lstm": ["--encoder", "lstm", "--hidden", "64", "--layers", "1", "--lr", "3e-3"],
    "patch": ["--encoder", "patch", "--hidden", "64", "--inter", "128", "--layers", "2", "--heads", "4",
              "--patch", "8", "--patch-stride", "8", "--wd", "0.05"],
}


def braid(encoder, epochs, threads, data):
    text = open(os.path.join(ROOT, "recipes/hapt", f"{encoder}.toml")).read()
    out = tempfile.mkdtemp()
    text = re.sub(r'out_dir = ".*"', f'out_dir = "{out}/run"', text)
    text = re.sub(r"epochs = \d+", f"epochs = {epochs}", text)
    text = re.sub(r'path = "hapt"', f'path = "{data}"', text)
    # Evaluate and checkpoint only at the end: PyTorch's figure times training alone.
    text = re.sub(r"(eval_every|checkpoint_every) = \d+", r"\1 = 0", text)
    recipe = os.path.join(out, "r.toml")
    open(recipe, "w").write(text)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    res = subprocess.run([os.path.join(ROOT, "target/release/braid"), "train", recipe, "--quiet"],
                         capture_output=True, text=True, env=env, check=True)
    sps = float(re.search(r"\(([\d.]+) samples/s\)", res.stderr).group(1))
    return sps, json.loads(res.stdout)["accuracy"]


def torch_run(encoder, epochs, threads, data):
    cmd = [sys.executable, os.path.join(HERE, "hapt_torch.py"), "--data", data, "--epochs", str(epochs),
           "--threads", str(threads)] + TORCH[encoder]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = [l for l in res.stdout.splitlines() if l.startswith("RESULT")][-1]
    fields = dict(kv.split("=") for kv in line.split()[1:])
    return float(fields["samples_per_s"]), float(fields["test_acc"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoder", choices=sorted(TORCH), default="cnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=os.path.expanduser("~/.cache/braid/datasets/hapt/hapt.npz"))
    a = p.parse_args()
    b_sps, b_acc = braid(a.encoder, a.epochs, a.threads, a.data)
    t_sps, t_acc = torch_run(a.encoder, a.epochs, a.threads, a.data)
    print(f"{a.encoder}, {a.epochs} epochs, {a.threads} threads: braid {b_sps:.0f} samples/s (acc {b_acc:.4f}), "
          f"pytorch {t_sps:.0f} samples/s (acc {t_acc:.4f}); braid/pytorch = {b_sps / t_sps:.2f}x")


if __name__ == "__main__":
    main()
