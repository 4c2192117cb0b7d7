"""Load test of an OpenAI-compatible server (issue 16): N concurrent clients for T seconds
of mixed chat (every other request streamed), each asking for a fixed number of tokens
(greedy, `ignore_eos`-like: the prompts ask for long answers and a stop is never given).
Prints one JSON line: requests, failures, p50/p99 latency, generated tokens/s over the
whole run (completion tokens as the server's `usage` reports them; for a stream, the last
chunk's usage, else the chunk count).

    python bench/serve_load.py --base-url http://127.0.0.1:8080/v1 --model smollm2 \\
        --clients 32 --seconds 60 --max-tokens 64

`bench/serve_load.sh` runs it against `braid serve` and llama-cpp-python's server on the
same GGUF, one after the other, and prints the ratio. Needs `pip install httpx`.
"""
import argparse
import asyncio
import json
import statistics
import time

import httpx

PROMPTS = [
    "Write a long story about a hiker who wears a smartwatch.",
    "Explain in detail how an accelerometer works.",
    "Describe, step by step, how to bake bread.",
    "List as many animals as you can, with one fact each.",
]


async def one(client, args, i, stream):
    body = {"model": args.model, "max_tokens": args.max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], "stream": stream}
    t = time.perf_counter()
    tokens = 0
    if stream:
        async with client.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code != 200:
                return None
            chunks = 0
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                c = json.loads(line[6:])
                if c.get("usage"):
                    tokens = c["usage"]["completion_tokens"]
                if c.get("choices") and c["choices"][0].get("delta", {}).get("content"):
                    chunks += 1
            tokens = tokens or chunks
    else:
        r = await client.post("/chat/completions", json=body)
        if r.status_code != 200:
            return None
        tokens = r.json()["usage"]["completion_tokens"]
    return time.perf_counter() - t, tokens


async def client_loop(client, args, k, deadline, out):
    i = k
    while time.perf_counter() < deadline:
        try:
            res = await one(client, args, i, stream=(i % 2 == 0))
        except Exception:
            res = None
        out.append(res)
        i += args.clients


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    out = []
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=args.base_url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + args.seconds
        await asyncio.gather(*(client_loop(client, args, k, deadline, out) for k in range(args.clients)))
        wall = time.perf_counter() - start
    ok = [r for r in out if r is not None]
    lat = sorted(r[0] for r in ok)
    tokens = sum(r[1] for r in ok)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
    print(json.dumps({"label": args.label, "requests": len(out), "failed": len(out) - len(ok),
                      "p50_s": round(q(0.5), 3), "p99_s": round(q(0.99), 3),
                      "tokens": tokens, "wall_s": round(wall, 1), "tokens_per_s": round(tokens / wall, 2),
                      "mean_tokens": round(statistics.mean(r[1] for r in ok), 1) if ok else 0}))


if __name__ == "__main__":
    asyncio.run(main())
