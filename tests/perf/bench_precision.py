"""Training-step and generation speed of SmolLM2-135M in fp32 and bf16 on this CPU.

Whether bf16 pays off on a CPU depends on native bf16 instructions (AVX512-BF16 or AMX): without them
PyTorch emulates bf16 matrix products and the "faster" precision can be the slower one. The `cpu`
profile's `mixed_precision` and `eval_dtype` settings were chosen on a CPU with them; run this on yours.

Run: python tests/perf/bench_precision.py [--steps 3] [--seq 512] [--batch 4]
Writes tests/perf/results/precision-<cpu capability>.json.
"""
import argparse, json, platform, time
from pathlib import Path
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--new-tokens", type=int, default=64)
args = ap.parse_args()

from magicagent.models import load_causal_lm

flags = set()
try: flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":")[1].split())
except (OSError, StopIteration): pass
res = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
       "native_bf16": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")), "machine": platform.machine(),
       "torch": torch.__version__, "args": vars(args)}

def train_steps(autocast:bool) -> float:
    "Seconds per optimizer step (forward, backward, AdamW) on random token batches, after one warm-up step."
    torch.manual_seed(0)
    model = load_causal_lm("smollm2-135m", dtype="float32"); model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.randint(0, model.config.vocab_size, (args.batch, args.seq))
    times = []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=x, labels=x).loss
        loss.backward(); opt.step(); opt.zero_grad()
        if i: times.append(time.perf_counter() - t0)
    return round(sum(times) / len(times), 2)

def gen_speed(dtype:str) -> float:
    "Greedy tokens per second: 8 prompts, exactly `--new-tokens` new tokens each (end of text ignored)."
    from magicagent.models import load_tokenizer
    tok = load_tokenizer("smollm2-135m"); tok.padding_side = "left"
    model = load_causal_lm("smollm2-135m", dtype=dtype).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Give me a plan to visit city number {i}."}],
                                       tokenize=False, add_generation_prompt=True) for i in range(8)]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kw = dict(do_sample=False, pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=4, **kw)
        t0 = time.perf_counter()
        model.generate(**enc, min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens, **kw)
    return round(8 * args.new_tokens / (time.perf_counter() - t0), 1)

res["train_step_s"] = {"fp32": train_steps(False), "bf16_autocast": train_steps(True)}
res["generate_tokens_per_s"] = {"float32": gen_speed("float32"), "bfloat16": gen_speed("bfloat16")}
print(json.dumps(res, indent=1))
out = Path(__file__).with_name("results"); out.mkdir(exist_ok=True)
(out / f"precision-{res['cpu_capability'].lower()}.json").write_text(json.dumps(res, indent=1) + "\n")
