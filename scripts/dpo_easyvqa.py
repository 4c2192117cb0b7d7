"""Preference pairs and a POPE-style probe for the easy-VQA model (issue 18), from files
Braid wrote: `braid data make easy-vqa` (train.json, test.json) and the model's answers
(`braid eval ... --answers`). Standard library only.

    python3 scripts/dpo_easyvqa.py pairs TRAIN_JSON ANSWERS_JSONL OUT_JSON [SHORTCUTS=400]
    python3 scripts/dpo_easyvqa.py pope TEST_JSON OUT_JSON [IMAGES=200]
    python3 scripts/dpo_easyvqa.py score ANSWERS_JSONL          # accuracy, yes-rate

pairs: chosen = the truth, rejected = (a) the model's own wrong answers to the training
questions it was asked, and (b) the text-only shortcut: the answer the question's wording
alone suggests (its form's majority answer over the training set, e.g. "no" for "is there a
C shape?"), for questions whose truth is the other one.

pope: for each test image, four yes/no questions in POPE's form ("is there a ... in the
image?", Li et al. 2023): its colour and its shape (yes), a colour and a shape it lacks (no),
both drawn by a seeded generator: half the answers are yes.
"""
import collections
import json
import random
import re
import sys

COLOURS = ["red", "green", "blue", "black", "gray", "teal", "brown", "yellow"]
SHAPES = ["circle", "rectangle", "triangle"]


def question(sample):
    return sample["conversations"][0]["value"].split("\n", 1)[1]


def answer(sample):
    return sample["conversations"][1]["value"]


def form(q):
    q = re.sub(r"\b(" + "|".join(COLOURS) + r")\b", "C", q)
    return re.sub(r"\b(" + "|".join(SHAPES) + r")\b", "S", q)


def pairs(train_path, answers_path, out_path, shortcuts=400):
    train = json.load(open(train_path))
    by_id = {s["id"]: s for s in train}
    out = []
    for line in open(answers_path):
        a = json.loads(line)
        if a["answer"].strip().lower() != a["truth"].strip().lower() and a["answer"].strip():
            out.append(dict(by_id[a["id"]], id=a["id"] + "_error", rejected=a["answer"].strip()))
    errors = len(out)
    counts = collections.defaultdict(collections.Counter)
    for s in train:
        if answer(s) in ("yes", "no"):
            counts[form(question(s))][answer(s)] += 1
    majority = {f: c.most_common(1)[0][0] for f, c in counts.items()}
    rng = random.Random(0)
    against = [s for s in train if answer(s) in ("yes", "no") and majority[form(question(s))] != answer(s)]
    for s in rng.sample(against, min(shortcuts, len(against))):
        out.append(dict(s, id=s["id"] + "_shortcut", rejected=majority[form(question(s))]))
    rng.shuffle(out)
    json.dump(out, open(out_path, "w"))
    print(f"{len(out)} pairs: {errors} from the model's errors, {len(out) - errors} against the text-only shortcut")


def pope(test_path, out_path, images=200):
    test = json.load(open(test_path))
    facts = collections.defaultdict(dict)
    for s in test:
        q, a = question(s), answer(s)
        m = re.fullmatch(r"what color is the shape\?", q)
        if m:
            facts[s["image"]]["colour"] = a
        if re.fullmatch(r"what shape is in the image\?|what is the shape\?", q):
            facts[s["image"]]["shape"] = a
    rng = random.Random(0)
    out = []
    for img, f in list((i, f) for i, f in facts.items() if "colour" in f and "shape" in f)[:images]:
        k = len(out) // 4
        absent_c = rng.choice([c for c in COLOURS if c != f["colour"]])
        absent_s = rng.choice([s for s in SHAPES if s != f["shape"]])
        for what, truth, kind in [
            (f"a {f['colour']} shape", "yes", "present"), (f"a {absent_c} shape", "no", "absent"),
            (f"a {f['shape']}", "yes", "present"), (f"a {absent_s}", "no", "absent"),
        ]:
            out.append({"id": f"{k}-{len(out) % 4}_{kind}", "image": img, "conversations": [
                {"from": "human", "value": f"<image>\nis there {what} in the image?"},
                {"from": "gpt", "value": truth}]})
    json.dump(out, open(out_path, "w"))
    print(f"{len(out)} questions on {len(out) // 4} images, half yes")


def score(answers_path):
    rows = [json.loads(l) for l in open(answers_path)]
    yes = sum(r["answer"].strip().lower() == "yes" for r in rows)
    ok = sum(r["answer"].strip().lower() == r["truth"].strip().lower() for r in rows)
    absent = [r for r in rows if r["id"].endswith("_absent")]
    ok_absent = sum(r["answer"].strip().lower() == "no" for r in absent)
    print(json.dumps({"n": len(rows), "accuracy": ok / len(rows), "yes_rate": yes / len(rows),
                      "absent_accuracy": ok_absent / max(1, len(absent))}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "pairs":
        pairs(args[0], args[1], args[2], *(int(a) for a in args[3:]))
    elif cmd == "pope":
        pope(args[0], args[1], *(int(a) for a in args[2:]))
    else:
        score(args[0])
