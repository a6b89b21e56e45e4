"""NovelSelect benchmark: the fast (bounded lazy) path against the naive loop, N = 20,000, D = 384, budget 1,000, CPU.

    python tests/perf/bench_novelsum.py --threads 1 --naive-steps 999 --device-path cpu   # the full benchmark (tests/perf/results/novelsum.json)
    python tests/perf/bench_novelsum.py --n 2000 --budget 100 --naive-steps 99 --small-budget 50   # a quick run

`--device-path DEVICE` also times the GPU engine (`novelselect_device`: certified fixed-width steps, no per-step host
read) on DEVICE (cpu: its CPU-tensor run; cuda where there is one) and checks its picks against the fast path's.

The pool is a seeded mixture of 200 Gaussian clusters (float32 rows, like sentence embeddings).
Each measurement runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own;
the density (exact K-NN over the pool, shared by both paths) is timed separately.
Measured:
  * fast path, full budget: wall time, peak memory, exact novelty evaluations per step;
  * naive loop, full budget only if `--naive-steps` >= budget - 1; otherwise its first
    `--naive-steps` steps, whose per-step times are fitted with a + b·|S| and summed over the
    full budget (an estimate, labelled as such), and its picks checked against the fast path's;
  * single naive steps at |S| = 250, 500, 750, 999 (S = the fast path's picks so far): measured
    times that check the fitted estimate, and the naive pick compared with the fast path's next one;
  * both paths in full on `--small-budget`, picks compared.
On a machine shared with other work, use `--threads 1` (the figures in results/ were taken so):
two intra-op threads competing with other processes slow small tensor operations many-fold.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
PICKS = Path(tempfile.gettempdir()) / f"novelsum_bench_picks_{os.getpid()}.json"


def pool(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, d))
    return (centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, d))).astype(np.float32)


def child(a):
    import torch
    from magicagent import novelselect as ns
    if a.threads: torch.set_num_threads(a.threads)
    x = pool(a.n, a.d)
    t = time.perf_counter(); sigma = ns.local_density(x, 10, "paper") ** 0.5; t_density = time.perf_counter() - t
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"mode": a.mode, "budget": a.budget, "density_s": t_density, "threads": torch.get_num_threads()}
    t = time.perf_counter()
    if a.mode == "fast":
        s = ns.novelselect(x, a.budget, sigma=sigma, seed=0)
        out.update(indices=s.indices, exact_per_step=s.stats["exact_per_step"], re_evaluated=s.stats["re_evaluated"])
    elif a.mode == "device":
        s = ns.novelselect_device(x, a.budget, sigma=sigma, seed=0, device=a.device)
        if a.device.startswith("cuda"): import torch as _t; _t.cuda.synchronize()
        out.update(indices=s.indices, exact_per_step=s.stats["exact_per_step"], steps=s.stats["steps"],
                   host_reads=s.stats["host_reads"], width_final=s.stats["width_final"], device=a.device)
    elif a.mode == "probe":  # single naive steps late in the run, from the fast path's selection so far
        e, sig = ns._prepare(x, 0.5, 10, "paper", "cpu", sigma)
        fast = json.loads(Path(a.fast_picks).read_text()); probes = []
        for m in (250, 500, 750, 999):
            if m >= a.budget: continue
            S = fast[:m]; t1 = time.perf_counter()
            v = torch.cat([ns.novelty(e, sig, S, torch.arange(i, min(i + 4096, a.n)), 1.0, "paper") for i in range(0, a.n, 4096)])
            v[S] = -float("inf"); p = ns.pick(v)
            probes.append({"selected": m, "step_s": time.perf_counter() - t1, "naive_pick_equals_fast": p == fast[m]})
        out.update(indices=[], probes=probes)
    else:  # the naive loop, step by step (same code as novelselect_naive), timing every step
        e, sig = ns._prepare(x, 0.5, 10, "paper", "cpu", sigma)
        S = [ns.first_pick(a.n, 0)]; excl = torch.zeros(a.n, dtype=torch.bool); excl[S[0]] = True; steps = []
        while len(S) < min(a.budget, a.steps + 1):
            t1 = time.perf_counter()
            v = torch.cat([ns.novelty(e, sig, S, torch.arange(i, min(i + 4096, a.n)), 1.0, "paper") for i in range(0, a.n, 4096)])
            v[excl] = -float("inf"); p = ns.pick(v); S.append(p); excl[p] = True
            steps.append((len(S) - 1, time.perf_counter() - t1))
        out.update(indices=S, step_times=steps)
    out["loop_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["loop_rss_increase_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(json.dumps(out))


def run(a, mode, budget, steps=0):
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--n", str(a.n), "--d", str(a.d), "--budget", str(budget),
           "--steps", str(steps), "--threads", str(a.threads), "--fast-picks", str(PICKS), "--device", a.device or "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000); p.add_argument("--d", type=int, default=384)
    p.add_argument("--budget", type=int, default=1000); p.add_argument("--naive-steps", type=int, default=100)
    p.add_argument("--small-budget", type=int, default=100); p.add_argument("--threads", type=int, default=0)
    p.add_argument("--child", action="store_true"); p.add_argument("--mode"); p.add_argument("--steps", type=int, default=0)
    p.add_argument("--fast-picks", default=None)
    p.add_argument("--device-path", default=None, help="also time novelselect_device on this torch device (cpu, cuda)")
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child: return child(a)
    a.device = a.device_path
    res = {"n": a.n, "d": a.d, "budget": a.budget, "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}
    fast = run(a, "fast", a.budget)
    PICKS.write_text(json.dumps(fast["indices"]))
    print(f"fast  budget {a.budget}: {fast['loop_s']:.1f} s, peak {fast['peak_rss_mb']:.0f} MB "
          f"(+{fast['loop_rss_increase_mb']:.0f} MB in the loop), {fast['exact_per_step']:.0f} exact scores/step; density {fast['density_s']:.1f} s", flush=True)
    naive = run(a, "naive", a.budget, min(a.naive_steps, a.budget - 1))
    st = np.array(naive["step_times"]); k = len(st)
    same = naive["indices"] == fast["indices"][:k + 1]
    coef = np.polyfit(st[:, 0], st[:, 1], 1)
    est = float(np.polyval(coef, np.arange(1, a.budget)).sum()) if k < a.budget - 1 else float(st[:, 1].sum())
    print(f"naive first {k} steps: {st[:, 1].sum():.1f} s measured (last step {st[-1, 1]:.2f} s at |S| = {int(st[-1, 0])}); "
          f"same picks: {same}; full budget {'measured' if k == a.budget - 1 else 'estimated'} {est:.0f} s, "
          f"peak {naive['peak_rss_mb']:.0f} MB (+{naive['loop_rss_increase_mb']:.0f} MB)", flush=True)
    probes = run(a, "probe", a.budget)["probes"]
    for pr in probes: print(f"naive single step at |S| = {pr['selected']}: {pr['step_s']:.2f} s measured; pick equals the fast path's: {pr['naive_pick_equals_fast']}", flush=True)
    pts = sorted(({int(m): t for m, t in st} | {pr["selected"]: pr["step_s"] for pr in probes}).items())
    est_probe = float(np.interp(np.arange(1, a.budget), [m for m, _ in pts], [t for _, t in pts]).sum())
    print(f"naive full budget, interpolated through the measured steps and the single late steps: {est_probe:.0f} s", flush=True)
    sf, sn = run(a, "fast", a.small_budget), run(a, "naive", a.small_budget, a.small_budget - 1)
    print(f"budget {a.small_budget}, both in full: fast {sf['loop_s']:.1f} s, naive {sn['loop_s']:.1f} s "
          f"({sn['loop_s'] / sf['loop_s']:.1f}x), same picks: {sf['indices'] == sn['indices']}", flush=True)
    res.update(fast={k_: v for k_, v in fast.items() if k_ != "indices"},
               naive={"steps_measured": k, "measured_s": float(st[:, 1].sum()), "same_picks_as_fast": same,
                      "per_step_fit_s": {"a": coef[1], "b_per_selected": coef[0]},
                      "full_budget_s": est, "full_budget_is_estimate": k < a.budget - 1,
                      "peak_rss_mb": naive["peak_rss_mb"], "loop_rss_increase_mb": naive["loop_rss_increase_mb"],
                      "step_times": naive["step_times"], "late_single_steps": probes},
               naive_full_budget_interpolated_s=est_probe,
               speedup_full_budget=est / fast["loop_s"], speedup_full_budget_interpolated=est_probe / fast["loop_s"],
               small_budget={"budget": a.small_budget, "fast_s": sf["loop_s"], "naive_s": sn["loop_s"],
                             "speedup": sn["loop_s"] / sf["loop_s"], "same_picks": sf["indices"] == sn["indices"]},
               load_avg_end=os.getloadavg())
    if a.device_path:
        dv = run(a, "device", a.budget)
        res["device_path"] = {**{k_: v for k_, v in dv.items() if k_ != "indices"}, "same_picks_as_fast": dv["indices"] == fast["indices"]}
        print(f"device path on {a.device_path}: {dv['loop_s']:.1f} s, {dv['steps']} steps, {dv['host_reads']} host reads, "
              f"final width {dv['width_final']}; same picks as the fast path: {dv['indices'] == fast['indices']}", flush=True)
    print(f"speed-up at budget {a.budget}: {res['speedup_full_budget']:.1f}x (fit), {res['speedup_full_budget_interpolated']:.1f}x (interpolated)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "novelsum.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
