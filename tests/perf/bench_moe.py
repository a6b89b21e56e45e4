"""Optimiser-step time of global-batch against micro-batch load balancing, in the same two-process run.

    python tests/perf/bench_moe.py [--steps 30] [--threads 1]

launches `torchrun --standalone --nproc_per_node 2` on this file: two gloo ranks train the tiny Qwen3-MoE of
`magicagent.moe` with `MoESFTTrainer` (3 single-task micro-batches of 2 per step, the `cpu` profile's MoE settings),
switching the balance term at every optimiser step — global (one all-reduce of the counts per micro-batch) on even
steps, micro-batch on odd ones — so that both see the same machine load. A step's time runs from `on_step_begin` to
`on_step_end`; since steps hold different tokens, each is divided by the step's padded tokens (what the forward
computes, summed over the ranks). The first two steps (warm-up) are left out. Writes tests/perf/results/bench_moe.json with the medians and their ratio
(global / micro; the target is at most 1.05).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "perf" / "results" / "bench_moe.json"


def worker(steps:int, out:str):
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback
    from magicagent.moe import MoESFTTrainer, RoutingLog, BalanceState, build_tiny_moe, moe_args, moe_tokenizer, all_reduce_sum
    from magicagent.models import drop_too_long
    from magicagent.profiles import load_profile, typed
    from magicagent.sft import build_sft_trainer, training_template
    from magicagent.synth.base import iter_samples
    values = load_profile("cpu")
    per_task = 2 * 2 * (steps + 2) + 4                                    # two ranks × one micro-batch of 2 per task and step
    tok = moe_tokenizer("tiny-moe"); tok.chat_template = training_template(tok)
    samples, _ = drop_too_long([s for t in ("scheduling", "orchestration", "decomposition")
                                for s in iter_samples(t, per_task, seed=0, progress=False)], typed(values, "max_seq_length", int), tok)
    a, b = typed(values, "moe_aux_loss_coeff", float), typed(values, "moe_z_loss_coeff", float)
    states = {"global": BalanceState("global", a, b), "micro": BalanceState("micro", a, b)}
    log = RoutingLog(states["global"], [s.task for s in samples])         # single-task micro-batches
    times = {"global": [], "micro": []}

    class Alternate(TrainerCallback):
        "Even steps global, odd steps micro; the time and tokens of each step."
        def on_step_begin(self, args, state, control, **kw):
            self.variant = "global" if state.global_step % 2 == 0 else "micro"
            log.state = states[self.variant]
            self.tokens0, self.t0 = tokens[0], time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            dt = time.perf_counter() - self.t0
            tok = all_reduce_sum(torch.tensor([float(tokens[0] - self.tokens0)]))[0].item()
            if state.global_step > 2: times[self.variant].append(dt / tok)

    tokens = [0]
    class Count(MoESFTTrainer):
        def compute_loss(self, model, inputs, *args, **kw):
            tokens[0] += inputs["input_ids"].numel()
            return super().compute_loss(model, inputs, *args, **kw)

    with tempfile.TemporaryDirectory() as d:
        tr = build_sft_trainer(values, samples, d, "tiny-moe", [log, Alternate()], trainer_cls=Count, model=build_tiny_moe(0),
                               **{**moe_args(values, "global"), "max_steps": steps + 2, "save_strategy": "no", "disable_tqdm": True,
                                  "logging_steps": 1000})
        tr.train()
    if dist.get_rank() == 0:
        med = {k: statistics.median(v) for k, v in times.items()}
        q = {k: [1000 * x for x in statistics.quantiles(v, n=4)] if len(v) > 1 else None for k, v in times.items()}
        Path(out).write_text(json.dumps({"seconds_per_1k_tokens": {k: 1000 * v for k, v in med.items()},
                                         "quartiles_seconds_per_1k_tokens": q,
                                         "steps_each": {k: len(v) for k, v in times.items()},
                                         "ratio_global_over_micro": med["global"] / med["micro"],
                                         "per_step_seconds_per_1k_tokens": {k: [1000 * x for x in v] for k, v in times.items()}}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps (half of them each way)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker: return worker(a.steps, a.worker)
    tmp = Path(tempfile.mkdtemp()) / "bench_moe.json"
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
                        "--steps", str(a.steps), "--worker", str(tmp)], cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONPATH": str(ROOT)})
    if r.returncode: sys.exit(f"bench_moe: the two-process run failed (exit code {r.returncode})")
    res = {"command": f"python tests/perf/bench_moe.py --steps {a.steps} --threads {a.threads}", "processes": 2,
           "wall_seconds": round(time.time() - t0, 1), "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
           **json.loads(tmp.read_text())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "per_step_seconds_per_1k_tokens"}, indent=1))


if __name__ == "__main__":
    main()
