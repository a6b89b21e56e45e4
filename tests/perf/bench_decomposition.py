"""Decomposition samples per second on one core, with the template teacher.

    python tests/perf/bench_decomposition.py [--seconds 10]

Measures, in one process (no workers):
  * `samples_per_second`: accepted samples through `magicagent.synth.base.iter_samples` — composition,
    rule checks, the teacher's text, strict QA parsing, semantic checks, the Sample record's validation,
    the generator's own `check_sample` and the SimHash filter; rejected candidates count as time spent;
  * `plans_per_second`: `sample_plan` alone (the contract other generators build on; target ≥ 500/s).
Writes tests/perf/results/decomposition.json. Target: ≥ 200 samples/s.
"""
import argparse, json, os, platform, random, time
from pathlib import Path
from magicagent.synth.base import iter_samples
from magicagent.synth.decomposition import sample_plan

TARGETS = {"samples_per_second": 200, "plans_per_second": 500}

def sample_rate(seconds):
    list(iter_samples("decomposition", 20, seed=999, progress=False))       # warm-up: catalog, graphs, imports
    n, m, t0 = 0, {}, time.perf_counter()
    for _ in iter_samples("decomposition", 10**9, seed=1, progress=False, manifest=m, max_attempts=10**9):
        n += 1
        if n % 50 == 0 and time.perf_counter() - t0 >= seconds: break
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": round(dt, 3), "per_second": round(n / dt, 1),
            "candidates": m["stages"].get("candidates"), "rejected": dict(m["rejected"])}

def plan_rate(seconds):
    r, n, t0 = random.Random(0), 0, time.perf_counter()
    while True:
        sample_plan(r); n += 1
        if n % 50 == 0 and time.perf_counter() - t0 >= seconds: break
    dt = time.perf_counter() - t0
    return {"plans": n, "seconds": round(dt, 3), "per_second": round(n / dt, 1)}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    s, pl = sample_rate(a.seconds), plan_rate(a.seconds / 2)
    res = {"task": "decomposition", "teacher": "template", "samples": s, "plans": pl,
           "samples_per_second": s["per_second"], "plans_per_second": pl["per_second"], "targets": TARGETS,
           "meets_targets": s["per_second"] >= TARGETS["samples_per_second"] and pl["per_second"] >= TARGETS["plans_per_second"],
           "load_average": list(os.getloadavg()), "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    print(json.dumps(res, indent=1))
    out = Path(__file__).parent / "results" / "decomposition.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
