"""Where an SFT epoch's compute goes: tokens per record, truncation, and the padding that batching adds.

An SFT step costs about the padded tokens of its batch (every record is padded to the longest of its batch), so the
time of an epoch follows the padded total, not the records' own tokens. This script tokenizes the training records as
the trainer sees them (the chat template of the tokenizer, truncated at `--max-seq-length`), then reports per task the
tokens per record and, for batches of `--batch-size`, the padded tokens of an epoch in the data's order and with
records of similar length batched together (what `group_by_length` approximates). No model runs; it takes seconds.

Run (after the selection stage of a run, e.g. `magicagent run --profile cpu --only 03-20`):
    python tests/perf/bench_sft_tokens.py --data runs/cpu/select/selected.jsonl [--batch-size 4] [--max-seq-length 1536]
Writes tests/perf/results/sft_tokens-<name of the data's run>.json.
"""
import argparse, json, statistics
from collections import defaultdict
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True, help="a JSONL of Sample records (e.g. runs/cpu/select/selected.jsonl)")
ap.add_argument("--batch-size", type=int, default=4)
ap.add_argument("--max-seq-length", type=int, default=1536)
ap.add_argument("--out", default=None)
args = ap.parse_args()

from magicagent.core import read_jsonl
from magicagent.models import smollm2_tokenizer, chat_lengths

data = Path(args.data)
if not data.is_file(): raise SystemExit(f"--data {data}: no such file")
tok = smollm2_tokenizer()
records = list(read_jsonl(data, as_sample=True))
rows = list(zip((s.task for s in records), chat_lengths(records, tok)))
if not rows: raise SystemExit(f"--data {data}: no records")
cut = [min(n, args.max_seq_length) for _, n in rows]


def padded(lengths, bs):
    "Tokens an epoch computes when each batch of `bs` is padded to its longest record."
    return sum(max(lengths[i:i + bs]) * len(lengths[i:i + bs]) for i in range(0, len(lengths), bs))


by_task = defaultdict(list)
for (t, n), c in zip(rows, cut): by_task[t].append(c)
in_order, grouped = padded(cut, args.batch_size), padded(sorted(cut), args.batch_size)
report = {
    "data": "/".join(data.resolve().parts[-4:]), "records": len(rows), "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
    "truncated": sum(n > args.max_seq_length for _, n in rows),
    "tokens": sum(cut), "padded_tokens_in_order": in_order, "padded_tokens_by_length": grouped,
    "padding_share_in_order": round(1 - sum(cut) / in_order, 3), "padding_share_by_length": round(1 - sum(cut) / grouped, 3),
    "by_task": {t: {"records": len(v), "tokens": sum(v), "share_of_tokens": round(sum(v) / sum(cut), 3),
                    "mean": round(statistics.mean(v)), "median": statistics.median(v), "max": max(v)}
                for t, v in sorted(by_task.items())},
}
print(json.dumps(report, indent=1))
out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"sft_tokens-{data.parent.parent.name}.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1) + "\n")
print("wrote", out)
