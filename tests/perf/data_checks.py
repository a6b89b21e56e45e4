"""Data that tells the truth: the four checkers of `magicagent.synth.checks` over 10,000 samples of every task,
and how often long-horizon user prompts repeat.

Run:  nice -n 10 python tests/perf/data_checks.py [--n 10000] [--seed 0] [--tasks decomposition ...]
      nice -n 10 python tests/perf/data_checks.py --files 'DIR/{task}.jsonl' --source 'what they are' --label before
Writes tests/perf/results/data_checks.json (or data_checks_<label>.json with --label).

Per task, `--n` samples are synthesized in memory with `iter_samples` (one worker). Two counts:
* `candidates_rejected_by_checks`: candidates each generator's `check_sample` rejected because a checker found something
  (`data_<check>` in the manifest) — findings in text the generator wrote, before anything was filtered;
* `findings_in_samples`: findings of every checker on the accepted samples (samples with at least one finding, per check).
Both are 0 when the generators write truthful text. With --files, the samples are read from the given files (e.g. from an
older version of the generators) and only the second count applies.
Repeats: among the first 300 long-horizon samples, those whose user turns (every user message) are word for word those of
an earlier sample. The timings are for sizing only on a shared machine.
"""
import argparse, json, sys, time
from collections import Counter
from pathlib import Path

TASKS = ("decomposition", "tool_planning", "scheduling", "orchestration", "long_horizon")

def findings(samples, sample_problems):
    "Samples with at least one finding, per check, and the first few findings of each check."
    per, first = Counter(), {}
    for s in samples:
        found = sample_problems(s)
        for check in {c for c, _ in found}: per[check] += 1
        for c, p in found:
            if len(first.setdefault(c, [])) < 3: first[c].append(p)
    return dict(per), first

def prompt_repeats(samples, k=300):
    "How many of the first `k` samples repeat an earlier sample's user turns word for word."
    seen, rep = set(), 0
    for s in samples[:k]:
        key = tuple(m["content"] for m in s.messages if m["role"] == "user")
        rep += key in seen; seen.add(key)
    return {"samples": min(k, len(samples)), "repeated": rep, "rate": round(rep / max(1, min(k, len(samples))), 4)}

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS)); ap.add_argument("--files", default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--source", default=None, help="what the --files are, recorded instead of their path")
    a = ap.parse_args()
    from magicagent.core import read_jsonl
    from magicagent.synth.base import iter_samples
    from magicagent.synth.checks import sample_problems, CHECKS
    out = {"n": a.n, "seed": a.seed, "source": (a.source or "files") if a.files else "synthesized by this checkout", "checks": list(CHECKS), "tasks": {}}
    for task in a.tasks:
        t0, m = time.time(), {}
        if a.files: samples = list(read_jsonl(a.files.format(task=task), as_sample=True))[: a.n]
        else: samples = list(iter_samples(task, a.n, seed=a.seed, manifest=m, progress=False))
        per, first = findings(samples, sample_problems)
        row = {"samples": len(samples), "findings_in_samples": per, "examples": first, "seconds": round(time.time() - t0, 1)}
        if not a.files:
            row["candidates"] = m["stages"].get("candidates", 0)
            row["candidates_rejected_by_checks"] = {k: v for k, v in m["rejected"].items() if k.startswith("data_")}
            row["rejected"] = m["rejected"]
        if task == "long_horizon": out["long_horizon_prompt_repeats"] = prompt_repeats(samples)
        out["tasks"][task] = row
        print(task, json.dumps({k: v for k, v in row.items() if k != "examples"}), file=sys.stderr, flush=True)
    dest = Path(__file__).parent / "results" / (f"data_checks_{a.label}.json" if a.label else "data_checks.json")
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({t: (r["findings_in_samples"], r.get("candidates_rejected_by_checks")) for t, r in out["tasks"].items()}))
    if "long_horizon_prompt_repeats" in out: print("long-horizon prompt repeats:", out["long_horizon_prompt_repeats"])

if __name__ == "__main__": main()
