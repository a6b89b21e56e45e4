"""Evaluation time with and without a budget of padded prompt tokens per batch (`eval_batch_tokens`).

A generation batch pads every prompt to its longest, so ten long-horizon prompts of 660 to 3,810
tokens cost ten times the longest in prefill (and in attention at every decoding step). This
script evaluates the same model on the same held-out prompts twice, first with batches of
`--batch-size` prompts only, then also within `--batch-tokens` padded tokens, and records the
generation time of each and how many completions are the same.

Run (the held-out split of a `cpu` run, e.g. after `magicagent run --profile cpu --only 03-20`):
    python tests/perf/bench_eval_batches.py --model smollm2-135m --data nbs/../runs/cpu/synth/heldout \\
        [--tasks long_horizon] [--limit 10] [--batch-size 10] [--batch-tokens 8192] [--max-new-tokens 64]
Writes tests/perf/results/eval_batches-<cpu capability or cuda>.json.
"""
import argparse, json, platform, tempfile
from pathlib import Path
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="smollm2-135m")
ap.add_argument("--data", required=True, help="held-out directory (<task>.jsonl)")
ap.add_argument("--tasks", default="long_horizon", help="comma-separated tasks of the split to use")
ap.add_argument("--limit", type=int, default=10)
ap.add_argument("--batch-size", type=int, default=10)
ap.add_argument("--batch-tokens", type=int, default=8192)
ap.add_argument("--max-new-tokens", type=int, default=64)
ap.add_argument("--dtype", default="float32")
args = ap.parse_args()

from magicagent.evaluate import evaluate, eval_batches, load_split
from magicagent.models import get_generator

gen = get_generator(args.model, batch_size=args.batch_size, dtype=args.dtype)
runs, rows = {}, {}
with tempfile.TemporaryDirectory() as d:
    sub = Path(d) / "split"; sub.mkdir()
    for t in args.tasks.split(","):
        f = Path(args.data) / f"{t}.jsonl"
        if not f.exists(): raise SystemExit(f"--data {args.data}: no {t}.jsonl")
        (sub / f.name).write_text(f.read_text())
    ss = load_split(sub, args.limit)
    lengths = gen.prompt_lengths([s.prompt for s in ss])
    for label, budget in (("batch_size only", None), (f"batch_tokens {args.batch_tokens}", args.batch_tokens)):
        out = Path(d) / label.replace(" ", "_")
        res = evaluate(args.model, sub, out, limit=args.limit, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                       generator=gen, progress=True, batch_tokens=budget)
        rows[label] = {json.loads(l)["id"]: json.loads(l)["completion"] for l in (out / "heldout_completions.jsonl").open()}
        batches = eval_batches(lengths, [s.task for s in ss], args.batch_size, budget)
        runs[label] = {"seconds": res["seconds"], "batches": len(batches),
                       "padded_prompt_tokens": sum(len(b) * max(lengths[i] for i in b) for b in batches),
                       "prompt_tokens": sum(lengths), "mean_reward": res["overall"].get("reward")}
        print(label, runs[label])
a, b = rows.values()
result = {"device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
          "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": torch.__version__, "args": vars(args),
          "runs": runs, "same_completions": sum(a[k] == b[k] for k in a), "completions": len(a)}
name = "cuda" if torch.cuda.is_available() else torch.backends.cpu.get_cpu_capability().lower()
out = Path(__file__).parent / "results" / f"eval_batches-{name}.json"
out.write_text(json.dumps(result, indent=1) + "\n"); print(json.dumps(result, indent=1)); print("written:", out)
