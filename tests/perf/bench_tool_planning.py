"""Throughput of the §3.2 and §3.5 generators on one core, template teacher.

Run:  python tests/perf/bench_tool_planning.py [--n 2000]
Prints the figures and writes tests/perf/results/tool_planning.json.

Measured after a warm-up that loads the catalog and computes its embeddings once (both are cached
per process, so they are a start-up cost, reported separately): tool-planning trajectories per
second (plan → simulated ReAct trajectory → audit → distractors → Sample, i.e. `make_sample`;
also through `iter_samples` with its checks and near-duplicate filter) and long-horizon samples
per second (each task yields `per_task` samples from a seed and a scaled trajectory).
"""
import argparse, json, os, platform, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=2000); ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch; torch.set_num_threads(1)
    from magicagent.synth.base import iter_samples
    from magicagent.synth import tool_planning as tp, long_horizon as lh, simulator as SIM
    from magicagent.synth.base import Reject
    res = {"n": a.n, "cores": 1, "python": platform.python_version()}
    t = time.perf_counter(); box = SIM.default_box(); tp.catalog_embeddings(box); res["startup_s"] = round(time.perf_counter() - t, 2)
    for i in range(20): tp.make_sample(10**6 + i, a.seed)                       # warm caches (validators, plan sampler)
    t = time.perf_counter(); ok = 0
    for i in range(a.n):
        try: tp.make_sample(i, a.seed); ok += 1
        except Reject: pass
    dt = time.perf_counter() - t
    res["tool_planning_trajectories_per_s"] = round(ok / dt, 1)
    t = time.perf_counter(); m = {}
    n = sum(1 for _ in iter_samples("tool_planning", a.n, seed=a.seed + 1, manifest=m, progress=False))
    res["tool_planning_samples_per_s_iter_samples"] = round(n / (time.perf_counter() - t), 1); res["tool_planning_rejected"] = m["rejected"]
    for i in range(8): lh.make_sample(10**6 + i, a.seed)
    t = time.perf_counter(); m = {}
    n = sum(1 for _ in iter_samples("long_horizon", a.n, seed=a.seed, manifest=m, progress=False))
    dt = time.perf_counter() - t
    res["long_horizon_samples_per_s"] = round(n / dt, 1); res["long_horizon_rejected"] = m["rejected"]
    res["long_horizon_tasks_per_s"] = round(m["stages"]["candidates"] / 4 / dt, 1)
    print(json.dumps(res, indent=2))
    out = Path(__file__).parent / "results" / "tool_planning.json"; out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")

if __name__ == "__main__": main()
