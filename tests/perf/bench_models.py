"""Model loading and generation timings.

Run: python tests/perf/bench_models.py
Writes tests/perf/results/models.json.
"""
import json, subprocess, sys, time
from pathlib import Path

def timed(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])

res = {}
res["tiny_random"] = timed("""
import time, json; t0 = time.time()
from magicagent.models import build_tiny_random; import torch, transformers; t1 = time.time()
from transformers import LlamaForCausalLM; t2 = time.time()
build_tiny_random(); t3 = time.time(); build_tiny_random(); t4 = time.time()
print(json.dumps({"import_torch_transformers_s": round(t1-t0, 3), "import_llama_module_s": round(t2-t1, 3),
                  "first_build_s": round(t3-t2, 3), "second_build_s": round(t4-t3, 3)}))""")
res["smollm2"] = timed("""
import time, json; t0 = time.time()
from magicagent.models import get_generator
g = get_generator("smollm2-135m", batch_size=8); t1 = time.time()
msgs = [[{"role": "user", "content": f"Give me a plan to visit city number {i}."}] for i in range(8)]
out = g.generate(msgs, max_new_tokens=64); t2 = time.time()
print(json.dumps({"load_s": round(t1-t0, 2), "generate_8x64_s": round(t2-t1, 2), "tokens_per_s": round(8*64/(t2-t1), 1)}))""")
print(json.dumps(res, indent=1))
Path(__file__).with_name("results").mkdir(exist_ok=True)
(Path(__file__).with_name("results") / "models.json").write_text(json.dumps(res, indent=1) + "\n")
