#!/usr/bin/env bash
# The fusion suite's table from runs/fusion/results.jsonl (scripts/fusion.sh): per dataset
# and arm, test accuracy and macro-F1 as mean ± std over the seeds run, parameters, training
# seconds on this machine, accuracy with each input missing, and with noise of 1 training
# std on each input. Markdown on stdout.
#   scripts/fusion_table.sh > /tmp/table.md
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-runs/fusion/results.jsonl}
command -v jq >/dev/null || { echo "fusion_table.sh needs jq" >&2; exit 1; }

jq -rs '
  def mean: add / length;
  def std: (mean) as $m | (map(. - $m | . * .) | add / (if length > 1 then length - 1 else 1 end)) | sqrt;
  def pct: . * 1000 | round / 10;
  def ms: "\(map(.) | mean | pct) ± \(std | pct)";
  def at($input; $noise): [.[] | .robustness[] | select(.input == $input and .noise == $noise) | .accuracy];
  def cell($xs): if ($xs | length) == 0 then "–" else ($xs | ms) end;
  group_by(.dataset)[] as $d
  | ($d[0].dataset) as $ds
  | ([$d[] | .inputs] | add | unique) as $all
  | "\n### \($ds)\n",
    "| arm | method | inputs | accuracy % | macro-F1 % | seeds | params | train s | " + ([$all[] | "\(.) missing"] | join(" | ")) + " | " + ([$all[] | "noise 1σ on \(.)"] | join(" | ")) + " |",
    "|---|---|---|---|---|---|---|---|" + ([$all[] | "---"] | join("|")) + "|" + ([$all[] | "---"] | join("|")) + "|",
    ($d | group_by(.arm) | sort_by(-([.[].accuracy] | mean))[]
      | . as $runs
      | "| \(.[0].arm) | \(.[0].method) | \(.[0].inputs | join("+")) | \([.[].accuracy] | ms) | \([.[].macro_f1] | ms) | \(length) | \(.[0].params) | \([.[].train_seconds] | mean | round) | "
        + ([$all[] as $i | if ($runs[0].inputs | index($i)) == null or ($runs[0].inputs | length) < 2 then "–" else cell($runs | at($i; null)) end] | join(" | "))
        + " | "
        + ([$all[] as $i | if ($runs[0].inputs | index($i)) == null then "–" else cell($runs | at($i; 1)) end] | join(" | "))
        + " |")
' "$RESULTS"
