"""Batched greedy decoding speed of SmolLM2-135M on this machine: batch size and KV cache.

Evaluation decodes greedily from long prompts (held-out tool-planning and long-horizon prompts run
to 1,500 tokens) and a batch decodes until its longest answer ends, so a batch is worth it only
if a decoding step for B sequences costs much less than B steps for one. This script times
prefill and decoding steps at several batch sizes (same prompt length, left-padded as in
evaluation) and, at the largest batch, transformers' dynamic cache against a static one (same
tokens required).

Run: python tests/perf/bench_generate.py [--batches 1,4,10] [--prompt 800] [--new-tokens 48] [--dtype float32]
Writes tests/perf/results/generate-<cpu capability or cuda>.json.
"""
import argparse, json, platform, time
from pathlib import Path
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--batches", default="1,4,10")
ap.add_argument("--prompt", type=int, default=800, help="prompt tokens (the longest of a batch; the others are shorter, left-padded)")
ap.add_argument("--new-tokens", type=int, default=48)
ap.add_argument("--dtype", default="float32")
args = ap.parse_args()

from magicagent.models import load_causal_lm

dev = "cuda" if torch.cuda.is_available() else "cpu"
model = load_causal_lm("smollm2-135m", dtype=args.dtype).to(dev).eval()
eos = model.generation_config.eos_token_id
base_kw = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=eos if isinstance(eos, int) else eos[0])

def batch(b:int):
    g = torch.Generator().manual_seed(b)
    lens = [args.prompt - (args.prompt // 4) * i // max(1, b - 1) for i in range(b)]
    ids, mask = torch.zeros((b, args.prompt), dtype=torch.long), torch.zeros((b, args.prompt), dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, args.prompt - n:] = torch.randint(100, model.config.vocab_size, (n,), generator=g); mask[i, args.prompt - n:] = 1
    return ids.to(dev), mask.to(dev)

def run(ids, mask, new:int, cache:str="dynamic"):
    kw = {**base_kw, "max_new_tokens": new, "min_new_tokens": new}
    if cache != "dynamic": kw["cache_implementation"] = cache
    t0 = time.perf_counter()
    with torch.no_grad(): out = model.generate(input_ids=ids, attention_mask=mask, **kw)
    return time.perf_counter() - t0, out[:, ids.shape[1]:].cpu()

res = {"device": dev, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
       "machine": platform.machine(), "torch": torch.__version__, "args": vars(args), "batches": {}}
run(*batch(2), 2)                                                    # warm-up
for b in [int(x) for x in args.batches.split(",")]:
    ids, mask = batch(b)
    t1, _ = run(ids, mask, 1)                                        # prefill (and one token)
    tn, _ = run(ids, mask, args.new_tokens + 1)
    step = (tn - t1) / args.new_tokens
    res["batches"][b] = {"prefill_tokens_per_s": round(int(mask.sum()) / t1, 1), "decode_s_per_step": round(step, 4),
                         "decode_ms_per_sequence_token": round(1000 * step / b, 1)}
    print(b, res["batches"][b], flush=True)
b = max(int(x) for x in args.batches.split(","))
ids, mask = batch(b)
caches = {}
for cache in ("dynamic", "static"):
    dt, toks = run(ids, mask, args.new_tokens, cache)
    caches[cache] = {"seconds": round(dt, 2), "tokens": toks}
res["cache"] = {"batch": b, **{c: v["seconds"] for c, v in caches.items()},
                "same_tokens": bool(torch.equal(caches["dynamic"]["tokens"], caches["static"]["tokens"]))}
print("cache", res["cache"])
out = Path(__file__).parent / "results" / f"generate-{dev if dev == 'cuda' else res['cpu_capability'].lower()}.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(res, indent=1) + "\n")
print("wrote", out)
