"""Verified samples per second per core: scheduling (trip, meeting, calendar) and orchestration.

    python tests/perf/bench_scheduling.py [--seconds 10]

Each rate runs the whole per-candidate path on one core (one process, no workers): instance drawing, the
solver's uniqueness proof, rendering, the Sample record's validation, the generator's own check and the
stateful filters, through `magicagent.synth.base.iter_samples`. Rejected candidates count as time spent,
not as samples. Default difficulty (a level drawn per candidate) unless `--difficulty` is given; the
per-level rates are reported too. Writes tests/perf/results/scheduling.json.
Targets: calendar and meeting ≥ 100/s, trip ≥ 20/s, orchestration ≥ 200/s.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
from magicagent.synth.base import iter_samples
from magicagent.synth import scheduling as S

TARGETS = {"trip": 20, "meeting": 100, "calendar": 100, "orchestration": 200}

def rate(task, seconds, **opts):
    "Accepted samples per second while drawing for about `seconds` (after a short warm-up)."
    list(iter_samples(task, 20, seed=999, progress=False, **opts))          # warm-up: imports, entity caches
    n, m, t0 = 0, {}, time.perf_counter()
    for _ in iter_samples(task, 10**9, seed=1, progress=False, manifest=m, max_attempts=10**9, **opts):
        n += 1
        if n % 25 == 0 and time.perf_counter() - t0 >= seconds: break
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": round(dt, 3), "per_second": round(n / dt, 1),
            "candidates": m["stages"].get("candidates"), "rejected": dict(m["rejected"])}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--difficulty", type=int, default=None)
    p.add_argument("--levels", action="store_true", help="also time every difficulty level (3 s each)")
    a = p.parse_args(argv)
    opts = {} if a.difficulty is None else {"difficulty": a.difficulty}
    res = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
           "difficulty": a.difficulty if a.difficulty is not None else "default (drawn per candidate)", "rates": {}}
    for sub in S.SUBTASKS:
        res["rates"][sub] = rate("scheduling", a.seconds, subtask=sub, **opts)
    res["rates"]["orchestration"] = rate("orchestration", a.seconds, **opts)
    if a.levels:
        res["per_level"] = {sub: {lv: rate("scheduling", 3, subtask=sub, difficulty=lv)["per_second"] for lv in S.LEVELS} for sub in S.SUBTASKS}
    for k, r in res["rates"].items():
        ok = "ok" if r["per_second"] >= TARGETS[k] else "BELOW TARGET"
        print(f"{k:14s} {r['per_second']:9.1f} verified samples/s/core  (target {TARGETS[k]}/s: {ok}; "
              f"{r['samples']} in {r['seconds']} s, rejected {r['rejected']})")
    for sub, lv in res.get("per_level", {}).items(): print(f"{sub:14s} per level: {lv}")
    out = Path(__file__).parent / "results" / "scheduling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("wrote", out)

if __name__ == "__main__":
    main()
