"""Throughput of the unified reward (completions scored per second) and of the WorfBench scorer.

    python tests/perf/bench_rewards.py            # writes tests/perf/results/rewards.json

Two figures, as in the reward's use inside a GRPO step:
* rewards that need no embeddings (tool_planning, scheduling, long_horizon calls), one thread;
* rewards that need embeddings (decomposition, orchestration, the long_horizon `reply` tool),
  MiniLM on two threads, batched, starting from an empty cache, every completion's texts new
  (each carries a unique word), so the figure is not flattered by repeated texts.
Wall-clock rates depend on what else runs on the machine (its load average is recorded); the
rates per process-CPU-second do not. Completions are a realistic mix: correct, near misses, wrong content and broken format.
A third figure: WorfBench items scored per second by `magicagent score worfbench`'s scorer, with the
similarities computed as upstream computes them (`exact=True`, the default: one encode call per node
list, for every gold topological sort) and from the cached embedder (`exact=False`).
"""
import json, os, platform, random, sys, time
from pathlib import Path

import torch
from magicagent import rewards as R
from magicagent.models import Embedder, get_embedder
from magicagent.scorers.worfbench import worfbench_score
from magicagent.formats import render

OUT = Path(__file__).parent / "results" / "rewards.json"
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def variants(rng, good, bad, broken, n):
    out = []
    for i in range(n):
        k = rng.random()
        out.append(good(i) if k < .5 else bad(i) if k < .8 else broken(i))
    return out


def no_embedding_set(rng, n):
    from magicagent.synth import scheduling as SCH
    sch = []
    for sub in ("trip", "meeting", "calendar"):
        for i in range(300):
            try: sch.append(SCH.make_sample(i, 1, subtask=sub)); break
            except Exception: continue
    tp = {"tools": ["search_flights", "book_flight", "send_email"]}
    lh = {"name": "get_weather", "arguments": {"city": "Lyon", "days": 2}}
    rows = []
    for i in range(n):
        t = i % 3
        if t == 0:
            c = variants(rng, lambda j: render("tool_planning", {"think": f"step {j}", "tools": tp["tools"]}),
                         lambda j: render("tool_planning", {"think": f"step {j}", "tools": tp["tools"][::-1]}),
                         lambda j: f"<think>step {j}</think><action>search_flights</action>", 1)[0]
            rows.append(("tool_planning", c, tp))
        elif t == 1:
            s = sch[i % len(sch)]
            c = variants(rng, lambda j: s.target, lambda j: s.target.split("<answer>")[0] + "<answer>Day 1-2: Visit Oslo.</answer>",
                         lambda j: s.target.replace("</answer>", ""), 1)[0]
            rows.append(("scheduling", c, s.gold))
        else:
            c = variants(rng, lambda j: render("long_horizon", {"think": f"t{j}", **lh}),
                         lambda j: render("long_horizon", {"think": f"t{j}", "name": "get_weather", "arguments": {"city": "Paris", "days": j}}),
                         lambda j: '<think>t</think><tool_call>{"name": "get_weather", "arguments": {"city": }</tool_call>', 1)[0]
            rows.append(("long_horizon", c, lh))
    return rows


def embedding_set(rng, n):
    dec = {"steps": ["Search flights from Paris to Rome on May 3", "Compare the prices of the results", "Book the cheapest flight",
                     "Send the booking confirmation to the user"], "reply": "Your flight to Rome is booked."}
    wf = {"nodes": ["Open the travel website", "Search for hotels in Rome", "Search for flights to Rome", "Book the hotel",
                    "Book the flight", "Email the itinerary"],
          "edges": [[0, 1], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 6], [6, 7]]}
    reply = {"name": "reply", "arguments": {"content": "Which date do you want to travel on?"}}
    tag = lambda i: f" ({WORDS[i % 16]} {i})"
    rows = []
    for i in range(n):
        t = i % 3
        if t == 0:
            c = variants(rng, lambda j: render("decomposition", {"steps": [s + tag(j) for s in dec["steps"]], "reply": dec["reply"] + tag(j)}),
                         lambda j: render("decomposition", {"steps": [s + tag(j) for s in dec["steps"][::-1]], "reply": "Done" + tag(j)}),
                         lambda j: render("decomposition", dec).replace("Step2", "Step 5") + tag(j), 1)[0]
            rows.append(("decomposition", c, dec))
        elif t == 1:
            c = variants(rng, lambda j: render("orchestration", {"nodes": [s + tag(j) for s in wf["nodes"]], "edges": wf["edges"]}),
                         lambda j: render("orchestration", {"nodes": [s + tag(j) for s in wf["nodes"][::-1]], "edges": wf["edges"]}),
                         lambda j: "Node:\n1: " + tag(j), 1)[0]
            rows.append(("orchestration", c, wf))
        else:
            c = variants(rng, lambda j: render("long_horizon", {"think": "t", "name": "reply", "arguments": {"content": "What date will you travel" + tag(j) + "?"}}),
                         lambda j: render("long_horizon", {"think": "t", "name": "reply", "arguments": {"content": "I booked it" + tag(j)}}),
                         lambda j: "<think>t</think><tool_call>{reply}</tool_call>", 1)[0]
            rows.append(("long_horizon", c, reply))
    return rows


def worfbench_set(rng, n):
    "Gold and predicted WorfBench workflow texts: 4-7 steps, some parallel branches, predictions reordered or reworded."
    steps = ["Open the travel website", "Search for hotels in Rome", "Search for flights to Rome", "Book the hotel", "Book the flight",
             "Email the itinerary", "Go to the airport", "Check in online"]
    text = lambda nodes, edges: "Node:\n" + "".join(f"{k}: {x}\n" for k, x in enumerate(nodes, 1)) + "Edge: " + " ".join(
        f"({'START' if a == 0 else a},{'END' if b == len(nodes) + 1 else b})" for a, b in edges)
    golds, preds = [], []
    for i in range(n):
        g = [s + f" ({WORDS[i % 16]} {i})" for s in rng.sample(steps, rng.randint(4, 7))]
        e = [(0, 1), (0, 2), (1, 3), (2, 3)] + [(k, k + 1) for k in range(3, len(g) + 1)]
        p = list(g)
        if rng.random() < .5: rng.shuffle(p)
        if rng.random() < .5: p = [x.replace("Book", "Reserve") for x in p]
        golds.append(text(g, e)); preds.append(text(p, [(k, k + 1) for k in range(len(p) + 1)]))
    return golds, preds


CPU = {}


def rate(reward, rows, batch, key=None):
    "Completions per wall-clock second; per process-CPU-second goes to CPU[key] (robust to a busy machine)."
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        ch = rows[i:i + batch]
        reward([c for _, c, _ in ch], task=[t for t, _, _ in ch], gold=[g for _, _, g in ch])
    if key: CPU[key] = len(rows) / (time.process_time() - c0)
    return len(rows) / (time.perf_counter() - t0)


def main():
    rng = random.Random(0)
    res = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__}

    torch.set_num_threads(1)
    rows = no_embedding_set(rng, 30_000)
    r = R.UnifiedReward(tasks=["tool_planning", "scheduling", "long_horizon"])
    rate(r, rows[:300], 256)   # warm-up
    res["load_average_before"] = os.getloadavg()[0]
    res["no_embedding_per_s_1_thread"] = rate(r, rows, 256, "no_embedding_per_cpu_s")
    res["no_embedding_by_task_per_s"] = {t: rate(r, [x for x in rows if x[0] == t], 256) for t in ("tool_planning", "scheduling", "long_horizon")}

    torch.set_num_threads(2)
    get_embedder("minilm").encode(["warm-up"])   # load the model once, outside the timing
    for mode in ("mean", "chain", "graph"):
        rows = embedding_set(random.Random(1), 3_000)
        r = R.UnifiedReward(tasks=["decomposition", "orchestration", "long_horizon"], embedder=Embedder("minilm"),
                            orchestration_mode=mode)
        res[f"embedding_per_s_2_threads_cold_cache_{mode}"] = rate(r, rows, 256, f"embedding_per_cpu_s_cold_cache_{mode}")
        res[f"embedding_per_s_2_threads_warm_cache_{mode}"] = rate(r, rows, 256)
    golds, preds = worfbench_set(random.Random(2), 200)
    for exact in (True, False):
        t0, c0 = time.perf_counter(), time.process_time()
        for mode in ("chain", "graph"): worfbench_score(golds, preds, mode, Embedder("minilm"), exact=exact)
        res[f"worfbench_items_per_s_2_threads_{'exact' if exact else 'cached'}"] = 2 * len(golds) / (time.perf_counter() - t0)
        CPU[f"worfbench_items_per_cpu_s_{'exact' if exact else 'cached'}"] = 2 * len(golds) / (time.process_time() - c0)
    res["load_average_after"] = os.getloadavg()[0]
    res["per_cpu_second"] = CPU   # 2 threads: wall-clock rate on an idle 2-core machine is up to 2x these
    for k, v in res.items(): print(f"{k}: {v if not isinstance(v, float) else round(v)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
