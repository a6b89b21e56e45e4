"""X²PO's step time against GRPO's, in the same trainer, on the same episodes (target: ≤ 1.15).

X²PO adds three terms to GRPO's loss (token entropy, the think/action smoothing hinge, the
information-bottleneck surrogate); all three read the token entropies, which the trainer computes
for every method (Figure 8 plots them) but differentiates only when a term uses them. This script
plays a few batches of episodes once, then times the update of each batch under GRPO and under
X²PO alternately from the same weights, and reports the update ratio and the full-step ratio (the
rollout, identical for both methods, plus the update).

Run alone on the machine: python tests/perf/bench_xpo.py [--model runs/cpu/xpo/warm/final] [--reps 6] [--threads 2]
(without --model: a fresh small policy over four generated coin-collector games)
Writes tests/perf/results/xpo.json.
"""
import argparse, copy, json, platform, statistics, sys, tempfile, time
from pathlib import Path
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", default=None, help="a policy directory (the cpu profile's warm start, say)")
ap.add_argument("--games", default=None, help="a directory of .z8 games (default: runs/cpu/xpo/games/train if present, else four generated)")
ap.add_argument("--reps", type=int, default=6)
ap.add_argument("--group-size", type=int, default=4)
ap.add_argument("--games-per-step", type=int, default=4)
ap.add_argument("--max-turns", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)

from magicagent.envs import TextWorldEnv, make_game, parse_knobs, rollout, hf_generate, word_tokenizer, save_small_policy, expert_samples, VOCAB_EXTRA
from magicagent.models import load_causal_lm, load_tokenizer
from magicagent.xpo import EntropyReference, method_coefs, term_settings, xpo_step

root = Path(__file__).resolve().parents[2]
tmp = Path(tempfile.mkdtemp())
gdir = Path(args.games) if args.games else root / "runs" / "cpu" / "xpo" / "games" / "train"
games = sorted(str(p) for p in gdir.glob("*.z8")) if gdir.is_dir() else []
if not games:
    games = [str(make_game("coin", parse_knobs("level=4", "coin"), s, tmp / f"coin-{s}.z8")) for s in range(4)]
if args.model: start = args.model
else:
    env = TextWorldEnv(games)
    texts = list(VOCAB_EXTRA) + [m["content"] for x in expert_samples(env, range(len(games))) for m in x.messages]
    start = str(save_small_policy(tmp / "policy", word_tokenizer(texts), hidden_size=128, layers=2))
model, tok = load_causal_lm(start), load_tokenizer(start)
values = {"xpo_kl": 0.0, "xpo_entropy_coef": 0.001, "xpo_smooth_coef": 1.0, "xpo_ib_coef": 0.01}
G, n = args.group_size, args.games_per_step * args.group_size
envs = [TextWorldEnv(games) for _ in range(n)]

batches, t_roll = [], []
for r in range(args.reps):
    torch.manual_seed(r)
    seeds = [(r * args.games_per_step + g) % len(games) for g in range(args.games_per_step) for _ in range(G)]
    t0 = time.perf_counter()
    batches.append(rollout(hf_generate(model, tok, temperature=0.9, top_p=0.96, top_k=20, max_new_tokens=40), tok, envs, seeds, args.max_turns))
    t_roll.append(time.perf_counter() - t0)

times = {"grpo": [], "x2po": []}
for r, eps in enumerate(batches):
    for method in (("grpo", "x2po") if r % 2 == 0 else ("x2po", "grpo")):
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        refs = EntropyReference(by_type=method == "x2po"); refs.update({"think": 0.5, "action": 0.05, "all": 0.2})
        t0 = time.perf_counter()
        xpo_step(m, opt, eps, G, method_coefs(method, values), term_settings(values), refs, tok.pad_token_id, 0.9, chunk=8)
        times[method].append(time.perf_counter() - t0)

med = {k: statistics.median(v) for k, v in times.items()}
roll = statistics.median(t_roll)
res = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "policy": start,
       "parameters": sum(p.numel() for p in model.parameters()), "episodes_per_step": n, "reps": args.reps,
       "turns_per_step": statistics.mean(sum(len(e.turns) for e in b) for b in batches),
       "rollout_s": round(roll, 3), "update_s": {k: round(v, 3) for k, v in med.items()},
       "update_ratio": round(med["x2po"] / med["grpo"], 3), "step_ratio": round((roll + med["x2po"]) / (roll + med["grpo"]), 3),
       "target_step_ratio": 1.15}
out = root / "tests" / "perf" / "results" / "xpo.json"
out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + "\n")
print(json.dumps(res, indent=1))
