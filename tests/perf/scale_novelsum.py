"""NovelSelect scaling: time and peak memory against N and k (each selection in a fresh process), and the one-GPU projection.

    python tests/perf/scale_novelsum.py --sweep cpu          # 20_novelsum's cpu sweep, run alone (tests/perf/results/novelsum_scaling-cpu.json)
    python tests/perf/scale_novelsum.py --device cuda --points 100000x10000,20000x5000 --dim 384 \\
        --fit-from tests/perf/results/novelsum_scaling-cpu.json   # on a GPU: measured times beside their projection

The pool is `magicagent.novelsum.clustered_pool` (rows around 200 Gaussian centres). On a CPU both engines run (the lazy
path and the GPU path on CPU tensors, whose steps and exact pairs are what a GPU would do); on a GPU the GPU path. The
projection is `magicagent.novelsum.gpu_seconds` from the fitted operation counts of the CPU sweep (`--fit-from`, or this
run's own CPU rows) and the published throughput in `magicagent.novelsum.GPU`: upper envelope and fitted exponents.
Use `--threads 1` on a machine shared with other work (the default); timings move with the load, counts do not.
"""
import argparse, json, os
from pathlib import Path
from magicagent import novelsum as ns

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep", default=None, choices=sorted(ns.SWEEPS), help="a named sweep of 20_novelsum")
    p.add_argument("--points", default=None, help="NxK,NxK,... (instead of --sweep)")
    p.add_argument("--device", default="cpu"); p.add_argument("--dim", type=int, default=384)
    p.add_argument("--threads", type=int, default=1); p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit-from", default=None, help="a results file of a CPU sweep whose counts to project from")
    p.add_argument("--out", default=None, help="results file (default tests/perf/results/novelsum_scaling-<sweep or device>.json)")
    a = p.parse_args()
    if not (a.sweep or a.points): p.error("give --sweep or --points")
    points = ns.SWEEPS[a.sweep] if a.sweep else [tuple(map(int, s.split("x"))) for s in a.points.split(",")]
    paths = ["lazy", "device"] if a.device == "cpu" else ["device"]
    rows, load0 = [], os.getloadavg()
    for n, k in points:
        for path in paths:
            r = ns.measure_selection(n, k, a.dim, a.device, path, seed=a.seed, threads=a.threads); rows.append(r)
            print(f"n={n:>7,} k={k:>7,} {path:<6} {a.device}: {r['seconds']:8.1f} s (density {r['density_seconds']:.1f} s), "
                  f"peak {r['peak_mb']:7.0f} MB, {r['exact_per_step']:6.0f} exact/step, {r['steps']} steps, "
                  f"{r['exact_elements']:.3g} exact pairs", flush=True)
    base = [r for r in (json.loads(Path(a.fit_from).read_text())["rows"] if a.fit_from else rows)
            if r["path"] == "device" and r["device"] == "cpu"]
    res = {"device": a.device, "threads": a.threads, "load_avg_start": load0, "load_avg_end": os.getloadavg(), "rows": rows}
    if len(base) >= 3:
        fit, up, ops = ns.fit_counts(base), ns.upper_counts(base), ns.ops_per_step()
        res.update(fit=fit, upper=up, ops_per_step=ops, gpu=ns.GPU)
        for r in rows:
            g, u = (ns.gpu_seconds(r["n"], r["k"], ns.counts_at(f, r["n"], r["k"]), ops, r["dim"]) for f in (fit, up))
            r.update(projected_seconds=u["seconds"], projected_seconds_fitted=g["seconds"], projected_peak_mb=u["peak_mb"])
            print(f"n={r['n']:>7,} k={r['k']:>7,} {r['path']:<6} measured {r['seconds']:8.1f} s; projected on one {ns.GPU['name']}: "
                  f"{g['seconds']:.1f} s (fitted) to {u['seconds']:.1f} s (envelope)")
    out = Path(a.out) if a.out else HERE / "results" / f"novelsum_scaling-{a.sweep or a.device}.json"
    out.parent.mkdir(exist_ok=True); out.write_text(json.dumps(res, indent=1) + "\n"); print("wrote", out)


if __name__ == "__main__":
    main()
