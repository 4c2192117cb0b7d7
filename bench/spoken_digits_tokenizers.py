"""Which audio tokenizer can a small transformer learn spoken digits through, from scratch,
on the 2,000 training clips of `braid data make spoken-digits`, scored on the 300 test
clips in voices training never used? A plain PyTorch digit classifier (no language model)
over the same Whisper-style log-mel features the audio slot reads (64 mels, 10 ms hop,
2 s padded), the tokenizer being the only difference:

- `square16`: 16 x 16 patches, stride 16 (AST's / OneLLM's shape; 4 x 12 = 48 tokens);
- `square16s8`: 16 x 16 patches, stride 8 (overlapping; 7 x 24 tokens);
- `slice8`: whole-spectrum slices, 64 mels x 8 frames, stride 8 (25 tokens), the
  `patch_size = 64, patch_frames = 8` of recipes/onellm/audio.toml.

Then two pre-norm layers of width 64 (4 heads, MLP 256), mean pooling, a linear head;
AdamW 2e-3, batches of 8, one thread. Prints held-out accuracy per epoch.

    braid data make spoken-digits --out runs/data/spoken-digits
    python bench/spoken_digits_tokenizers.py [--data runs/data/spoken-digits] [--epochs 3]

Measured (torch 2.15, 1 thread, 2026-12-07, beside a training run), held-out accuracy
after epochs 1 / 2 / 3:
    square16    0.127 / 0.250 / 0.357
    square16s8  0.203 / 0.427 / 0.643
    slice8      0.873 / 0.910 / 0.933
"""
import argparse
import json
import sys
import time
import wave

import numpy as np
import torch
import torch.nn as nn
from transformers import WhisperFeatureExtractor

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def load(root, name, fe):
    xs, ys = [], []
    for s in json.load(open(f"{root}/{name}")):
        w = wave.open(f"{root}/{s['audio']}")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16) / 32768.0
        xs.append(fe(x, sampling_rate=16000, return_tensors="np").input_features[0])
        ys.append(DIGITS.index(s["conversations"][1]["value"]))
    return torch.tensor(np.stack(xs)).float(), torch.tensor(ys)


class Model(nn.Module):
    def __init__(self, kernel, stride, tokens):
        super().__init__()
        self.patch = nn.Conv2d(1, 64, kernel, stride)
        self.pos = nn.Parameter(torch.randn(1, tokens, 64) * 0.02)
        layer = nn.TransformerEncoderLayer(64, 4, 256, batch_first=True, norm_first=True, dropout=0.0)
        self.body = nn.TransformerEncoder(layer, 2)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        g = self.patch(x.unsqueeze(1)).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.body(g)).mean(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="runs/data/spoken-digits")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fe = WhisperFeatureExtractor(feature_size=64, sampling_rate=16000, hop_length=160, chunk_length=2, n_fft=400)
    xtr, ytr = load(args.data, "train.json", fe)
    xte, yte = load(args.data, "test.json", fe)
    arms = {
        "square16": ((16, 16), 16, 4 * 12),
        "square16s8": ((16, 16), 8, 7 * 24),
        "slice8": ((64, 8), 8, 25),
    }
    for name, (kernel, stride, tokens) in arms.items():
        torch.manual_seed(0)
        m = Model(kernel, stride, tokens)
        opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=0.0)
        start = time.time()
        for epoch in range(args.epochs):
            perm = torch.randperm(len(ytr))
            for i in range(0, len(perm), 8):
                idx = perm[i : i + 8]
                loss = nn.functional.cross_entropy(m(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc = (m(xte).argmax(1) == yte).float().mean().item()
            print(f"{name:<11} epoch {epoch + 1}: held-out {acc:.3f} ({time.time() - start:.0f} s)")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
