"""Orchestration synthesis: 5,000 workflows checked by an independent WorfBench-rule parser and an independent
graph checker (Kahn's algorithm, no networkx), determinism across workers, the CLI and bad options."""
import json, os, re, subprocess, sys
import pytest
from hypothesis import given, settings, strategies as st

from magicagent.core import read_jsonl
from magicagent.formats import parse_orchestration, render_orchestration
from magicagent.synth.base import iter_samples, Reject
from magicagent.synth import orchestration as O

N = 5000

# ---------------------------------------------------------------- WorfBench's parsing rules (SCORING.md), re-implemented
def wb_parse(text):
    if "Node" not in text: return None
    nodes = ["START"] + [m.strip() for m in re.findall(r"\d+[:.] (.+)", text)] + ["END"]
    edges = []
    for a, b in re.findall(r"\(\s*(\d+|START)\s*,\s*(\d+|END)\s*\)", text):
        edges.append((0 if a == "START" else int(a), len(nodes) - 1 if b == "END" else int(b)))
    return (nodes, edges) if edges else None

def topo_order(n_total, edges):
    "Kahn's algorithm taking the smallest ready node first; None if the graph has a cycle."
    indeg = [0] * n_total; succ = [[] for _ in range(n_total)]
    for a, b in edges: succ[a].append(b); indeg[b] += 1
    ready = sorted(k for k in range(n_total) if indeg[k] == 0); out = []
    while ready:
        k = ready.pop(0); out.append(k)
        for b in succ[k]:
            indeg[b] -= 1
            if indeg[b] == 0: ready.append(b); ready.sort()
    return out if len(out) == n_total else None

def candidates(prompt):
    return [l[2:] for l in prompt.split("Candidate actions:\n", 1)[1].split("\n") if l.startswith("- ")]

@pytest.fixture(scope="module")
def big():
    m = {}
    xs = list(iter_samples("orchestration", N, seed=202, progress=False, manifest=m))
    return xs, m

def test_5000_workflows_verified_independently(big):
    xs, m = big
    assert len(xs) == N, m
    shapes, sources = check_all(xs)
    assert shapes == {"chain", "graph"} and sources == {"orchestration.qa", "orchestration.tool_use"}
    print(m["stages"], m["rejected"])

@pytest.mark.parametrize("tool_source", ["builtin", "decomposition"])
def test_each_tool_source_verified(tool_source):
    m = {}
    xs = list(iter_samples("orchestration", 1000, seed=3, progress=False, manifest=m, source="tool_use", tool_source=tool_source))
    assert len(xs) == 1000, m
    shapes, _ = check_all(xs)
    assert shapes == {"chain", "graph"}

def check_all(xs):
    shapes, sources = set(), set()
    for x in xs:
        nodes, edges = x.gold["nodes"], [tuple(e) for e in x.gold["edges"]]
        n = len(nodes)
        # the text parses by WorfBench's rules back to the same graph, and by the package parser to gold
        wb = wb_parse(x.target)
        assert wb is not None and wb[0] == ["START"] + nodes + ["END"] and wb[1] == edges, x.id
        assert parse_orchestration(x.target) == x.gold
        # acyclic, one START (0, the only source) and one END (n+1, the only sink)
        order = topo_order(n + 2, edges)
        assert order is not None, x.id
        assert [k for k in range(n + 2) if all(b != k for _, b in edges)] == [0], x.id
        assert [k for k in range(n + 2) if all(a != k for a, _ in edges)] == [n + 1], x.id
        assert all(0 <= a <= n and 1 <= b <= n + 1 and a != b for a, b in edges)
        # every gold action is a node, once, and is offered among the candidates; distractors are not nodes
        cands = candidates(x.messages[1]["content"])
        assert len(set(nodes)) == n and set(nodes) <= set(cands), x.id
        assert len(cands) == n + x.meta["distractors"] and len(set(cands)) == len(cands), x.id
        # the topological order equals the gold sequence
        assert order[1:-1] == x.meta["sequence"] == list(range(1, n + 1)), x.id
        is_chain = edges == [(k, k + 1) for k in range(n + 1)]
        assert x.meta["shape"] == ("chain" if is_chain else "graph"), x.id
        shapes.add(x.meta["shape"]); sources.add(x.meta["generator"])
    return shapes, sources

def test_worfbench_parse_of_package_scorer(big):
    import magicagent.scorers.worfbench as rw
    xs, _ = big
    for x in xs[:2000]:
        nodes, edges = rw.worfbench_parse(x.target)
        assert nodes == ["START"] + x.gold["nodes"] + ["END"] and [list(e) for e in edges] == x.gold["edges"]

def test_verification_rejects_bad_dags():
    back = {"steps": ["Find the file", "Open the file"], "deps": [[1, 0]]}
    with pytest.raises(Reject) as e: O.verify_dag(O.build_dag(back), back)
    assert e.value.reason == "order_mismatch"
    loop = {"steps": ["a", "b", "c"], "deps": [[0, 1], [1, 2], [2, 0]]}
    with pytest.raises(Reject) as e: O.verify_dag(O.build_dag(loop), loop)
    assert e.value.reason == "cycle"
    dup = {"steps": ["a", "a"], "deps": [[0, 1]]}
    with pytest.raises(Reject) as e: O.verify_dag(O.build_dag(dup), dup)
    assert e.value.reason == "duplicate_action"
    ok = {"steps": ["a", "b", "c"], "deps": [[0, 2], [1, 2], [0, 1]]}
    g = O.build_dag(ok)
    assert O.verify_dag(g, ok) == [1, 2, 3] and (1, 3) not in g.edges  # transitive edge reduced
    missing = {"steps": ["a", "b"], "deps": []}
    with pytest.raises(Reject) as e: O.verify_dag(O.build_dag({"steps": ["a", "c"], "deps": []}), missing)
    assert e.value.reason == "missing_action"

@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8), st.data())
def test_random_dags_roundtrip(n, data):
    "Any dependency set oriented forward verifies, renders, and parses back by WorfBench's rules to the same graph."
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    deps = data.draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    plan = {"steps": [f"Do step {chr(65 + i)}" for i in range(n)], "deps": [list(d) for d in deps]}
    g = O.build_dag(plan)
    assert O.verify_dag(g, plan) == list(range(1, n + 1))
    edges = sorted([a, b] for a, b in g.edges)
    text = render_orchestration({"nodes": plan["steps"], "edges": edges})
    nodes, wedges = wb_parse(text)
    assert nodes[1:-1] == plan["steps"] and [list(e) for e in wedges] == edges
    # reachability is preserved by the transitive reduction
    closure = set(map(tuple, deps))
    changed = True
    while changed:
        new = {(a, d) for a, b in closure for c, d in closure if b == c} - closure
        changed = bool(new); closure |= new
    red = {(a - 1, b - 1) for a, b in g.edges if 1 <= a <= n and 1 <= b <= n}
    rc = set(red); changed = True
    while changed:
        new = {(a, d) for a, b in rc for c, d in rc if b == c} - rc
        changed = bool(new); rc |= new
    assert rc == closure

def test_decomposition_adapter_infers_dependencies():
    p = {"query": "q", "scenario": "condition", "steps": [
        {"tool": "get_weather", "arguments": {"city": "Oslo"}, "text": "Get the weather in Oslo"},
        {"tool": "get_rate", "arguments": {}, "text": "Get the rate"},
        {"tool": "book", "arguments": {"when": "{step1.date}", "rate": "result of step 2"}, "text": "Book it"}]}
    r = O.plan_from_decomposition(p)
    assert r["deps"] == [[0, 2], [1, 2]] and r["scenario"] == "condition" and r["tools"] == ["get_weather", "get_rate", "book"]
    seq = O.plan_from_decomposition({"query": "q", "steps": [{"tool": "a", "arguments": {}, "text": "A"}, {"tool": "b", "arguments": {}, "text": "B"}]})
    assert seq["deps"] == [[0, 1]] and seq["scenario"] == "general"

def test_options_and_errors():
    with pytest.raises(ValueError, match="source"): O.make_sample(0, 0, source="web")
    with pytest.raises(ValueError, match="colour"): O.make_sample(0, 0, colour="red")
    with pytest.raises(ValueError, match="difficulty"): O.make_sample(0, 0, difficulty=0)
    x = O.make_sample(4, 0, source="qa", distractors=0, width=5)
    assert x.meta["distractors"] == 0
    y = O.make_sample(3, 0, source="tool_use", difficulty=5)
    assert y.meta["distractors"] == 10 and y.id == "orchestration-tool_use-000003"

def _cli(args, cwd, hashseed="0"):
    env = dict(os.environ, PYTHONHASHSEED=hashseed)  # output must not depend on string hashing either
    return subprocess.run([sys.executable, "-m", "magicagent.pipeline", "synth", "--task", "orchestration", *args, "--no-progress"],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=env)

def test_cli_deterministic_across_workers(tmp_path):
    outs = []
    for w in (1, 2):
        r = _cli(["--n", "300", "--seed", "11", "--out", str(tmp_path / f"w{w}"), "--workers", str(w)], tmp_path, hashseed=str(w * 17))
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append((tmp_path / f"w{w}" / "orchestration.jsonl").read_bytes())
    assert outs[0] == outs[1]
    recs = list(read_jsonl(tmp_path / "w1" / "orchestration.jsonl", as_sample=True))
    assert len(recs) == 300 and all(parse_orchestration(r.target) == r.gold for r in recs)
    man = json.loads((tmp_path / "w1" / "manifest.json").read_text())["orchestration"]
    assert man["stages"]["candidates"] == 300 + sum(man["rejected"].values())
