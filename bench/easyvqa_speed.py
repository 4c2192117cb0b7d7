"""PyTorch side of bench/easyvqa_speed.sh: SmolLM2-135M-Instruct (random weights, its
config; speed does not depend on the values) on the exact shapes of the easy-VQA stages
(issue 8), CPU float32, one JSON line per case, as Braid's
`crates/braid-train/examples/vqa_speed.rs` prints them.

  a_align_5img   align step: 8 samples of 5 image tokens (MLP projector 64 -> 576 -> 576,
                 GELU) + 32 text tokens, LLM frozen, loss on the last 8 text positions,
                 backward into the projector, clip_grad_norm_(1.0), one AdamW step.
  b_align_64img  the same with 64 image tokens (the issue's reference shape).
  u_align_upm    the align step of recipes/onellm/image.toml: the 5 image tokens through
                 OneLLM's UPM (scripts/fixtures/upm.py: 3 experts of 2 blocks, width 128,
                 8 queries, start/end tags: 10 tokens) instead of the MLP.
  c_instruct     instruct step: 4 conversations of 5 image + 190 text tokens, peft LoRA
                 r 8 / alpha 16 on q,k,v,o,gate,up,down + the projector, loss on 20
                 positions each.
  d_eval         greedy answer: 15-token prefix (5 image tokens) cached once; per question
                 the DynamicCache cropped to the prefix, a 15-token question, 2 decode steps
                 (logits_to_keep=1, as `generate` does).

The training batch runs as one [batch, seq] forward (the sequences have equal lengths, so
no padding). `--heads` picks how the training loss gets its logits: `all` is the usual
Hugging Face path (`model(inputs_embeds=..., labels=...)`, logits at every position);
`labelled` projects only the labelled rows through lm_head (what Braid's `logits_at`
does). Each case runs once to warm up, then `--repeats` timed times; per_s is from the
median.

  /work/venv/bin/python bench/easyvqa_speed.py --threads 1 --repeats 3
"""

import argparse
import inspect
import json
import statistics
import sys
import time
import warnings

import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

VISION_DIM = 64
MAX_GRAD_NORM = 1.0
# The KV cache argument and output field: `past_key_values` until transformers renamed it `cache`.
CACHE = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def smollm2_config():
    """SmolLM2-135M(-Instruct)'s config.json, float32."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        hidden_act="silu",
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        attention_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        torch_dtype="float32",
    )


def projector(hidden):
    """LLaVA's mlp2x_gelu: Linear(64, hidden), GELU (erf), Linear(hidden, hidden)."""
    return nn.Sequential(nn.Linear(VISION_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def upm_projector(hidden):
    """OneLLM's UPM for one modality at the onellm recipes' size."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts", "fixtures"))
    from upm import Upm

    upm = Upm(modalities={"image": (5, VISION_DIM)}, width=128, heads=4, layers=2, experts=3,
              queries=8, llm=hidden, multiple_of=64)
    return lambda x: upm(x, "image")[0], list(upm.parameters())


def timings(repeats, fn):
    """Seconds of each of `repeats` timed runs after one warm-up."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def emit(case, unit, items, times, **extra):
    med = statistics.median(times)
    line = {
        "side": "pytorch", "case": case, "unit": unit, "items": items, "per_s": items / med,
        "median_s": med, "min_s": min(times), "repeats": len(times),
        "threads": torch.get_num_threads(), **extra,
    }
    print(json.dumps(line), flush=True)


def make_batch(size, image, text, labelled):
    """Features [size, image, 64], ids [size, text] and labels [size, image + text]
    (-100 except at the `labelled` positions), like Braid's `Batch::new`."""
    features = torch.randn(size, image, VISION_DIM)
    ids = torch.tensor([[100 + (i * 37 + s * 101) % 4000 for i in range(text)] for s in range(size)])
    labels = torch.full((size, image + text), -100, dtype=torch.long)
    for p in labelled:
        labels[:, p] = 100 + (p * 13) % 4000
    return features, ids, labels


def loss_of(model, embeds, labels, head):
    """Mean next-token cross-entropy over the labelled tokens of the batch."""
    if head == "all":
        return model(inputs_embeds=embeds, labels=labels, use_cache=False).loss
    hidden = model.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits, targets[keep])


def train_step(model, proj, batch, params, opt, head):
    features, ids, labels = batch
    with torch.no_grad():
        text = model.get_input_embeddings()(ids)
    embeds = torch.cat([proj(features), text], dim=1)
    loss = loss_of(model, embeds, labels, head)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    opt.step()


def align(model, case, image, repeats, heads, upm=False):
    size, text, labelled = 8, 32, 8
    tokens = 8 + 2 if upm else image  # what the projector hands the language model
    seq = tokens + text
    # The labels are made here: the UPM's sequence (queries and tags) is not image + text.
    features, ids, _ = make_batch(size, image, text, [])
    labels = torch.full((size, seq), -100, dtype=torch.long)
    for p in range(seq - labelled, seq):
        labels[:, p] = 100 + (p * 13) % 4000
    batch = (features, ids, labels)
    for head in heads:
        if upm:
            proj, params = upm_projector(model.config.hidden_size)
        else:
            proj = projector(model.config.hidden_size)
            params = list(proj.parameters())
        opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
        times = timings(repeats, lambda: train_step(model, proj, batch, params, opt, head))
        emit(case, "samples/s", size, times, seq=seq, labelled_per_sample=labelled, head=head)


def instruct(model, repeats, heads):
    size, image, text, labelled = 4, 5, 190, 20
    batch = make_batch(size, image, text, [image + 9 * k + 8 for k in range(labelled)])
    for head in heads:
        proj = projector(model.config.hidden_size)
        params = list(proj.parameters()) + [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0)
        times = timings(repeats, lambda: train_step(model, proj, batch, params, opt, head))
        trainable = sum(p.numel() for p in params)
        emit("c_instruct", "conversations/s", size, times, seq=image + text,
             labelled_per_sample=labelled, trainable_params=trainable, head=head)


@torch.no_grad()
def evaluate(model, repeats):
    image, prefix_text, question, decode = 5, 10, 15, 2
    proj = projector(model.config.hidden_size)
    embed = model.get_input_embeddings()
    features = torch.randn(1, image, VISION_DIM)
    prefix_ids = torch.tensor([[100 + (i * 37) % 4000 for i in range(prefix_text)]])
    question_ids = torch.tensor([[100 + (7 + i * 37) % 4000 for i in range(question)]])
    state = {}

    def run_prefix():
        embeds = torch.cat([proj(features), embed(prefix_ids)], dim=1)
        out = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
        state["cache"] = getattr(out, CACHE)

    prefix_times = timings(repeats, run_prefix)
    cache = state["cache"]
    cached = cache.get_seq_length()

    def answer():
        extra = cache.get_seq_length() - cached
        if extra > 0:
            cache.crop(-extra)  # a negative count removes that many positions (old and new API)
        out = model(inputs_embeds=embed(question_ids), use_cache=True, logits_to_keep=1, **{CACHE: cache})
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(decode):
            out = model(input_ids=nxt, use_cache=True, logits_to_keep=1, **{CACHE: cache})
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)

    times = timings(repeats, answer)
    emit("d_eval", "questions/s", 1, times, prefix=cached, question=question,
         decode_steps=decode, prefix_median_s=statistics.median(prefix_times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="abcd")
    ap.add_argument("--heads", default="all,labelled", help="training-loss logits: all, labelled, or both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft/transformers deprecations
    torch.manual_seed(0)
    heads = [h for h in args.heads.split(",") if h]
    if any(h not in ("all", "labelled") for h in heads):
        ap.error("--heads: all and/or labelled")
    repeats = max(1, args.repeats)

    model = LlamaForCausalLM(smollm2_config()).float()
    model.requires_grad_(False)
    print(f"PyTorch {torch.__version__}, attention {model.config._attn_implementation}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    model.train()
    if "a" in args.cases:
        align(model, "a_align_5img", 5, repeats, heads)
    if "b" in args.cases:
        align(model, "b_align_64img", 64, repeats, heads)
    if "u" in args.cases:
        align(model, "u_align_upm", 5, repeats, heads, upm=True)
    if "c" in args.cases or "d" in args.cases:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
        model = get_peft_model(model, lora).get_base_model()
        if "c" in args.cases:
            instruct(model, repeats, heads)
        if "d" in args.cases:
            model.eval()
            evaluate(model, repeats)


if __name__ == "__main__":
    main()
