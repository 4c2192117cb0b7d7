"""The official `openai` Python client against `braid serve`, unchanged: chat, streaming
chat and embeddings (issue 16). Exits non-zero on the first thing that does not hold.

    braid serve --model smollm2 --embed-model minilm --port 8080 &
    python bench/openai_client.py --base-url http://127.0.0.1:8080/v1

Needs `pip install openai` (tested with openai 2.x).
"""
import argparse
import sys

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--embed-model", default="minilm")
    ap.add_argument("--api-key", default="none")
    a = ap.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key)

    models = [m.id for m in client.models.list()]
    print("models:", models)
    assert a.model in models, models

    messages = [{"role": "user", "content": "Name three primary colours."}]
    whole = client.chat.completions.create(model=a.model, messages=messages, max_tokens=32, temperature=0)
    text = whole.choices[0].message.content
    print("chat:", repr(text), whole.usage)
    assert text and whole.usage.completion_tokens > 0

    pieces = []
    for chunk in client.chat.completions.create(model=a.model, messages=messages, max_tokens=32,
                                                temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    streamed = "".join(pieces)
    print("stream:", repr(streamed))
    assert streamed == text, (streamed, text)

    emb = client.embeddings.create(model=a.embed_model, input=["a wearable sensor", "an accelerometer"])
    dims = [len(d.embedding) for d in emb.data]
    print("embeddings:", dims, emb.usage)
    assert len(dims) == 2 and dims[0] == dims[1] > 0

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
        sys.exit("an unknown model was accepted")
    except Exception as e:  # openai.NotFoundError
        print("unknown model:", type(e).__name__)
    print("ok")


if __name__ == "__main__":
    main()
