#!/usr/bin/env python3
"""PyTorch reference for 6-activity recognition on UCI HAPT raw IMU (Braid's IMU encoders).

Mirrors Braid (crates/braid-data/src/imu/window.rs, crates/braid-encoders/src/imu/*):
  * windows of 128 samples, stride 64; label = majority of the window's samples over the
    12 HAPT classes (ties to the lower class), dropped when unlabelled samples outnumber it;
    kept only when the majority is one of the 6 activities (1-6) and, optionally, when at
    least --purity of the window's samples have that class (training windows only, unless
    --purity-test). Test = all such windows of the test users.
  * split by subject: users 1-21 train, 22-30 test.
  * per-channel standardisation with mean/std over every sample of the training recordings.
  * encoder -> mean pool over time -> Linear(width, 6); cross-entropy; AdamW (weight decay on
    matrices only, i.e. params with dim >= 2); linear warmup then cosine to 0 (per step);
    gradient clipping at global norm 1.0.
  * encoders: cnn  = Conv1d(k, stride s, padding k//2) + ReLU per width (no norm, no dropout);
              gru/lstm = stacked unidirectional RNN, all time steps pooled;
              patch = Conv1d patch embedding (no bias) + [class token] + learned positions
                      + pre-norm transformer blocks (GELU MLP) + final LayerNorm.

Augmentation (training only, all optional, applied to standardised windows):
  --aug-scale S : multiply each window by one factor ~ U(1-S, 1+S) (same for all channels)
  --aug-shift N : training windows start at stride-grid start + U{-N..N} (redrawn every
                  epoch, clipped to the recording; label recomputed for the shifted window)
  --aug-noise G : add N(0, G^2) to every value

Usage: python bench/hapt_torch.py --encoder cnn --widths 64,128,128 --kernel 5 --stride 2
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = ["walking", "upstairs", "downstairs", "sitting", "standing", "laying"]
WIN, STEP = 128, 64


# ----------------------------------------------------------------------------- data
def majority(lab):
    """Braid's rule over the 12 HAPT classes. Returns (class 1..12 or None, count)."""
    counts = np.bincount(lab[lab > 0], minlength=13)
    unl = int((lab < 0).sum())
    best = int(np.argmax(counts[1:])) + 1  # argmax returns the first max: ties -> lower class
    c = int(counts[best])
    if c == 0 or c < unl:
        return None, 0
    return best, c


def load(path, train_users):
    d = np.load(path)
    recs = sorted({k.rsplit("_", 1)[0] for k in d.files})
    out = {"train": [], "test": []}
    for r in recs:
        user = int(r[1:3])
        x = d[r + "_imu"].astype(np.float32)
        y = d[r + "_label"].astype(np.int64)
        out["train" if user in train_users else "test"].append((x, y))
    stats = np.concatenate([x for x, _ in out["train"]]).astype(np.float64)
    mean, std = stats.mean(0), stats.std(0)
    std[std < 1e-6] = 1.0
    norm = [[((x - mean) / std).astype(np.float32), y] for x, y in out["train"]]
    test = [[((x - mean) / std).astype(np.float32), y] for x, y in out["test"]]
    return norm, test, (mean, std)


def windows(recs, purity):
    """(rec index, start, label 0..5) for every kept window on the stride grid."""
    idx = []
    for i, (x, y) in enumerate(recs):
        for s in range(0, len(x) - WIN + 1, STEP):
            k, c = majority(y[s:s + WIN])
            if k is not None and 1 <= k <= 6 and c >= purity * WIN:
                idx.append((i, s, k - 1))
    return np.array(idx, dtype=np.int64)


def gather(recs, idx):
    x = np.stack([recs[i][0][s:s + WIN] for i, s, _ in idx])
    return torch.from_numpy(x), torch.from_numpy(idx[:, 2].copy())


# ----------------------------------------------------------------------------- models
class Cnn(nn.Module):
    def __init__(self, widths, kernel, stride):
        super().__init__()
        layers, c = [], 6
        for w in widths:
            layers.append(nn.Conv1d(c, w, kernel, stride=stride, padding=kernel // 2))
            c = w
        self.convs = nn.ModuleList(layers)
        self.dim = c

    def forward(self, x):  # [B,T,C] -> [B,T',D]
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = F.relu(conv(h))
        return h.transpose(1, 2)


class Rnn(nn.Module):
    def __init__(self, kind, hidden, layers):
        super().__init__()
        cls = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = cls(6, hidden, num_layers=layers, batch_first=True)
        self.dim = hidden

    def forward(self, x):
        return self.rnn(x)[0]


class Block(nn.Module):
    def __init__(self, d, heads, inter):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, inter), nn.Linear(inter, d)
        self.heads = heads

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.out(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Patch(nn.Module):
    def __init__(self, d, inter, layers, heads, patch, stride, cls_token):
        super().__init__()
        self.embed = nn.Conv1d(6, d, patch, stride=stride, bias=False)
        n = (WIN - patch) // stride + 1 + int(cls_token)
        self.cls = nn.Parameter(torch.randn(d) * 0.02) if cls_token else None
        self.pos = nn.Parameter(torch.randn(n, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, inter) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.dim = d

    def forward(self, x):
        h = self.embed(x.transpose(1, 2)).transpose(1, 2)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], 1)
        h = h + self.pos[: h.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)


class Classifier(nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc, self.head = enc, nn.Linear(enc.dim, len(CLASSES))

    def forward(self, x):
        return self.head(self.enc(x).mean(1))


def build(a):
    if a.encoder == "cnn":
        return Cnn([int(w) for w in a.widths.split(",")], a.kernel, a.stride)
    if a.encoder in ("gru", "lstm"):
        return Rnn(a.encoder, a.hidden, a.layers)
    return Patch(a.hidden, a.inter, a.layers, a.heads, a.patch, a.patch_stride, not a.no_cls)


# ----------------------------------------------------------------------------- metrics
def f1s(pred, true, k=len(CLASSES)):
    out = []
    for c in range(k):
        tp = int(((pred == c) & (true == c)).sum())
        fp = int(((pred == c) & (true != c)).sum())
        fn = int(((pred != c) & (true == c)).sum())
        out.append(2 * tp / max(2 * tp + fp + fn, 1))
    return out


@torch.no_grad()
def evaluate(model, x, y, batch=512):
    model.eval()
    pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    model.train()
    return float((pred == y).float().mean()), f1s(pred, y), pred


# ----------------------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/hapt.npz")
    p.add_argument("--encoder", choices=["cnn", "gru", "lstm", "patch"], default="cnn")
    p.add_argument("--widths", default="64,128,128", help="cnn channel widths")
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--stride", type=int, default=2, help="cnn conv stride")
    p.add_argument("--hidden", type=int, default=64, help="rnn hidden / transformer width")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--inter", type=int, default=256, help="transformer MLP width")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--patch-stride", type=int, default=8)
    p.add_argument("--no-cls", action="store_true", help="patch: no class token")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--purity", type=float, default=0.0, help="min fraction of the majority class (train)")
    p.add_argument("--purity-test", action="store_true", help="apply --purity to the test windows too")
    p.add_argument("--aug-scale", type=float, default=0.0)
    p.add_argument("--aug-shift", type=int, default=0)
    p.add_argument("--aug-noise", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=0, help="print test accuracy every N epochs")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    train_recs, test_recs, _ = load(a.data, set(range(1, 22)))
    tr_idx = windows(train_recs, a.purity)
    te_idx = windows(test_recs, a.purity if a.purity_test else 0.0)
    xtr, ytr = gather(train_recs, tr_idx)
    xte, yte = gather(test_recs, te_idx)
    print(f"windows: train {len(xtr)} test {len(xte)}  train class counts {np.bincount(ytr.numpy(), minlength=6).tolist()}")

    model = Classifier(build(a))
    nparams = sum(q.numel() for q in model.parameters())
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    steps_per_epoch = math.ceil(len(xtr) / a.batch)
    total = a.epochs * steps_per_epoch
    warm = max(1, int(a.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    print(f"encoder {a.encoder} params {nparams}  steps {total} (warmup {warm})")

    seen, t0 = 0, time.perf_counter()
    for ep in range(a.epochs):
        if a.aug_shift:  # re-cut the training windows at jittered starts
            idx = tr_idx.copy()
            lens = np.array([len(train_recs[i][0]) for i in idx[:, 0]])
            idx[:, 1] = np.clip(idx[:, 1] + rng.integers(-a.aug_shift, a.aug_shift + 1, len(idx)), 0, lens - WIN)
            for j, (i, s, _) in enumerate(idx):
                k, c = majority(train_recs[i][1][s:s + WIN])
                ok = k is not None and 1 <= k <= 6 and c >= a.purity * WIN
                idx[j] = (i, s, k - 1) if ok else tr_idx[j]
            xep, yep = gather(train_recs, idx)
        else:
            xep, yep = xtr, ytr
        perm = torch.randperm(len(xep))
        tot_loss = 0.0
        for b in range(steps_per_epoch):
            sel = perm[b * a.batch:(b + 1) * a.batch]
            x, y = xep[sel], yep[sel]
            if a.aug_scale:
                x = x * (1 + a.aug_scale * (2 * torch.rand(len(x), 1, 1) - 1))
            if a.aug_noise:
                x = x + a.aug_noise * torch.randn_like(x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(x)
            seen += len(x)
        msg = f"epoch {ep + 1:3d} loss {tot_loss / len(xep):.4f}  {time.perf_counter() - t0:6.1f}s"
        if a.eval_every and ((ep + 1) % a.eval_every == 0):
            msg += f"  test acc {evaluate(model, xte, yte)[0]:.4f}"
        print(msg, flush=True)
    wall = time.perf_counter() - t0

    acc, f1, pred = evaluate(model, xte, yte)
    cm = np.zeros((6, 6), dtype=int)
    np.add.at(cm, (yte.numpy(), pred.numpy()), 1)
    print("confusion (rows true, cols pred):\n" + "\n".join(" ".join(f"{v:5d}" for v in r) for r in cm))
    print("per-class F1: " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, f1)))
    print(f"RESULT encoder={a.encoder} test_acc={acc:.4f} macro_f1={np.mean(f1):.4f} params={nparams} "
          f"train_s={wall:.1f} samples_per_s={seen / wall:.0f} threads={a.threads} seed={a.seed}")


if __name__ == "__main__":
    main()
