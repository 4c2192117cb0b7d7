#!/usr/bin/env bash
# Preference tuning (DPO) of the committed easy-VQA model, issue 18:
#  1. the model answers every 20th training question (1,929); its wrong answers become
#     rejected answers, and 400 questions whose truth goes against the text-only shortcut
#     get the shortcut's answer as rejected (scripts/dpo_easyvqa.py pairs);
#  2. a POPE-style probe (scripts/dpo_easyvqa.py pope: present and absent colours and shapes,
#     half yes) is scored before and after;
#  3. recipes/easyvqa/preference.toml trains (reference: models/easyvqa);
#  4. easy-VQA's 9,673 test questions are scored after (before: models/easyvqa/report).
#
#   scripts/dpo_easyvqa.sh        # ~1 h on 2 cores, most of it the two evaluations
#
# Needs `braid fetch easy-vqa smollm2`, `braid data make easy-vqa --out runs/data/easy-vqa`,
# python3 (standard library). Writes runs/dpo/ and runs/easyvqa-dpo/.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BRAID:-target/release/braid}
mkdir -p runs/dpo
"$B" eval runs/data/easy-vqa/train.json --model models/easyvqa --every 20 \
    --answers runs/dpo/train_answers.jsonl > runs/dpo/train_eval.json
python3 scripts/dpo_easyvqa.py pairs runs/data/easy-vqa/train.json runs/dpo/train_answers.jsonl \
    runs/dpo/pref.json 400
python3 scripts/dpo_easyvqa.py pope runs/data/easy-vqa/test.json runs/dpo/pope.json 200
for who in before after; do
    model=models/easyvqa
    if [ "$who" = after ]; then
        "$B" train recipes/easyvqa/preference.toml --quiet --overwrite
        model=runs/easyvqa-dpo/model
    fi
    "$B" eval runs/dpo/pope.json --model "$model" --answers "runs/dpo/pope_$who.jsonl" > /dev/null
    echo "POPE $who: $(python3 scripts/dpo_easyvqa.py score "runs/dpo/pope_$who.jsonl")"
done
"$B" eval vqa --model runs/easyvqa-dpo/model --out runs/dpo/vqa_after.json
