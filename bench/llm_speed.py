"""Decode and prompt speed of `braid generate` (release build) against llama.cpp
(PyPI `llama-cpp-python`) on the same GGUF, same threads, measured in one run.

  decode: tokens/s of 128 single-token steps after a short prompt (llama-bench `tg128`)
  prompt: tokens/s of one 512-token prompt (llama-bench `pp512`)
Each tool runs in its own process (peak RSS = max resident set size of that process);
each measurement is repeated --reps times, alternating tools, and the best run is kept
(the machine may be shared). Prints one JSON line per tool and the two ratios braid/llama.cpp.

Usage: python bench/llm_speed.py [--gguf PATH] [--threads 2] [--reps 3] [--braid target/release/braid]
Needs: pip install llama-cpp-python (tested 0.3.36); cargo build --release -p braid-cli.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_GGUF = os.path.expanduser("~/.cache/braid/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
SHORT = "Once upon a time, in a small village by the sea,"
DECODE, PROMPT = 128, 512


def prompt_text(gguf):
    """A text of exactly PROMPT tokens (llama.cpp's tokenizer; braid's agrees, see tests)."""
    from llama_cpp import Llama

    m = Llama(model_path=gguf, vocab_only=True, verbose=False)
    base = open(os.path.join(ROOT, "fixtures/llm/smollm2/ppl.txt"), encoding="utf-8").read()
    toks = m.tokenize((base * 4).encode(), add_bos=False, special=False)[:PROMPT]
    return m.detokenize(toks).decode()


def llamacpp_child(gguf, threads, prompt_file):
    """Runs in a subprocess: prints {"decode_tok_s", "prompt_tok_s", "prompt_tokens"}."""
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    m = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512, verbose=False)
    nv = m.n_vocab()

    def argmax_last():
        return int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(m.ctx, -1), shape=(nv,)).argmax())

    toks = m.tokenize(open(prompt_file, encoding="utf-8").read().encode(), add_bos=False, special=False)
    m.reset()
    t = time.perf_counter()
    m.eval(toks)
    argmax_last()
    prompt_s = time.perf_counter() - t
    m.reset()
    m.eval(m.tokenize(SHORT.encode(), add_bos=False))
    tok = argmax_last()
    t = time.perf_counter()
    for _ in range(DECODE):
        m.eval([tok])
        tok = argmax_last()
    decode_s = time.perf_counter() - t
    print(json.dumps({"prompt_tokens": len(toks), "prompt_tok_s": len(toks) / prompt_s, "decode_tok_s": DECODE / decode_s}))


def run_child(cmd, env=None):
    """Runs `cmd`; returns (stdout, stderr, peak RSS in MiB of that process alone)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{stderr}")
    return stdout, stderr, usage.ru_maxrss / 1024


def braid_run(braid, gguf, threads, prompt_file):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    base = [braid, "generate", "--model", gguf, "--threads", str(threads), "--stats", "--ignore-eos"]
    _, err, rss1 = run_child(base + ["--prompt-file", prompt_file, "--max-tokens", "1"], env)
    prompt = json.loads(err.strip().splitlines()[-1])
    _, err, rss2 = run_child(base + ["--prompt", SHORT, "--max-tokens", str(DECODE + 1)], env)
    decode = json.loads(err.strip().splitlines()[-1])
    assert decode["decode_tokens"] == DECODE, decode
    return {"prompt_tokens": prompt["prompt_tokens"], "prompt_tok_s": prompt["prompt_tok_s"],
            "decode_tok_s": decode["decode_tok_s"]}, max(rss1, rss2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--braid", default=os.path.join(ROOT, "target/release/braid"))
    ap.add_argument("--llamacpp-child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.llamacpp_child:
        return llamacpp_child(a.gguf, a.threads, a.llamacpp_child[1])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(prompt_text(a.gguf))
    best = {"braid": None, "llama.cpp": None}
    rss = {"braid": 0.0, "llama.cpp": 0.0}
    for _ in range(a.reps):
        out, _, r = run_child([sys.executable, __file__, "--gguf", a.gguf, "--threads", str(a.threads),
                               "--llamacpp-child", "x", f.name])
        runs = {"llama.cpp": json.loads(out), "braid": None}
        rss["llama.cpp"] = max(rss["llama.cpp"], r)
        runs["braid"], r = braid_run(a.braid, a.gguf, a.threads, f.name)
        rss["braid"] = max(rss["braid"], r)
        for tool, res in runs.items():
            b = best[tool]
            best[tool] = {k: max(v, b[k]) if b else v for k, v in res.items()}
    for tool in ("braid", "llama.cpp"):
        print(json.dumps({"tool": tool, "threads": a.threads, **best[tool], "peak_rss_mib": round(rss[tool], 1)}))
    ratio = {k: best["braid"][k] / best["llama.cpp"][k] for k in ("decode_tok_s", "prompt_tok_s")}
    print(f"decode ratio braid/llama.cpp: {ratio['decode_tok_s']:.2f}  (target >= 0.8)")
    print(f"prompt ratio braid/llama.cpp: {ratio['prompt_tok_s']:.2f}")
    os.unlink(f.name)


if __name__ == "__main__":
    main()
