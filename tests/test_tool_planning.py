"Tool-augmented planning (§3.2): the API simulator's properties, call validation, and 10,000 emitted samples."
import json, random, sys, zlib
from collections import Counter
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from magicagent.core import validate_sample
from magicagent.formats import parse_tool_planning
from magicagent.synth.base import iter_samples, Reject
from magicagent.synth import tool_planning as tp
from magicagent.synth import simulator as SIM
from magicagent.synth.tools import load_catalog

BOX = SIM.ToolBox(load_catalog())
NAMES = [t.name for t in BOX.tools]

# ---- simulator: determinism, schema conformance, trajectory consistency ----

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), arg_seed=st.integers(0, 2**32), seed=st.integers(0, 2**40))
def test_simulator_deterministic_and_conforming(name, arg_seed, seed):
    tool = BOX[name]
    args = SIM.fake_value(tool.parameters, random.Random(arg_seed), optional_p=0.5)
    BOX.check(name, args)                                        # generated arguments are valid inputs
    out = SIM.ApiSimulator(BOX, seed=seed).respond(name, args)
    BOX.check(name, out, which="returns")                        # output conforms to the `returns` schema
    assert SIM.ApiSimulator(BOX, seed=seed).respond(name, json.loads(json.dumps(args))) == out  # same (tool, args, seed)
    assert json.dumps(out, sort_keys=True) == json.dumps(SIM.ApiSimulator(BOX, seed=seed).respond(name, dict(reversed(list(args.items())))), sort_keys=True)

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**40))
def test_issued_ids_accepted_fabricated_rejected(seed):
    consumers = {}                                               # id field -> tools whose only required parameter it is
    for t in BOX.tools:
        req = t.parameters.get("required", [])
        if len(req) == 1 and SIM.is_id_field(req[0]): consumers.setdefault(req[0], t.name)
    sim = SIM.ApiSimulator(BOX, seed=seed)
    checked = 0
    for t in BOX.tools:
        obs = sim.call(t.name, SIM.fake_value(t.parameters, random.Random(seed ^ zlib.crc32(t.name.encode())), optional_p=0.0))
        if "error" in obs: continue
        for path, key, v in SIM._walk(obs):
            if key in consumers and isinstance(v, str):
                nxt = sim.call(consumers[key], {key: v})
                assert "error" not in nxt, (t.name, key, v, nxt)
                checked += 1
        if checked > 5: break
    fake = sim.call(consumers["order_id"], {"order_id": "O-000000-never-issued"})
    assert fake["error"] == "not_found" and fake["field"] == "order_id"
    assert checked > 0

def test_entity_consistency():
    sim = SIM.ApiSimulator(BOX, seed=5)
    found = sim.call("search_products", {"query": "running shoes"})
    item = found["results"][0]
    detail = sim.call("get_product_details", {"product_id": item["product_id"]})
    assert "error" not in detail and detail["product_id"] == item["product_id"]
    shared = [k for k in item if k in detail and k != "product_id" and BOX["get_product_details"].returns["properties"].get(k, {}).get("type") == "number"]
    for k in shared: assert detail[k] == item[k], k

# ---- validation and pruning ----

@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(NAMES), arg_seed=st.integers(0, 2**32), data=st.data())
def test_malformed_call_names_tool_and_field(name, arg_seed, data):
    tool = BOX[name]
    args = SIM.fake_value(tool.parameters, random.Random(arg_seed))
    req = tool.parameters.get("required", [])
    props = tool.parameters.get("properties", {})
    how = data.draw(st.sampled_from(["drop", "retype", "null"]))
    if how == "drop" and req:
        field = data.draw(st.sampled_from(req)); args.pop(field, None)
    elif how == "retype" and props:
        field = data.draw(st.sampled_from(sorted(props)))
        args[field] = [] if props[field].get("type") != "array" else "not a list"
    else:
        field = data.draw(st.sampled_from(sorted(props))) if props else None
        if field is None: return
        args[field] = None                                      # null parameters are pruned, not errors
        call = SIM.validate_call({"name": name, "arguments": args}, BOX) if field not in req else None
        if call: assert field not in call["arguments"]
        else:
            with pytest.raises(SIM.ToolCallError) as e: SIM.validate_call({"name": name, "arguments": args}, BOX)
            assert e.value.tool == name and e.value.field == field
        return
    if how == "drop" and not req: return
    with pytest.raises(SIM.ToolCallError) as e: SIM.validate_call({"name": name, "arguments": args}, BOX)
    assert e.value.tool == name and e.value.field == field and f"tool {name!r}: field `{field}`" in str(e.value)

def test_unknown_tool_and_bad_arguments_named():
    with pytest.raises(SIM.ToolCallError, match="tool 'teleport': field `name`"): SIM.validate_call({"name": "teleport", "arguments": {}}, BOX)
    with pytest.raises(SIM.ToolCallError, match="field `arguments`"): SIM.validate_call({"name": "search_products", "arguments": "{oops"}, BOX)

def test_prune_nulls():
    assert SIM.prune_nulls({"a": None, "b": {"c": None, "d": [1, None]}, "e": 0}) == {"b": {"d": [1]}, "e": 0}

# ---- trajectories on the demo catalog ----

def _plan(scenario="condition"):
    q = "Find my shipped orders, open one and, if refundable, refund it; also the weather."
    return {"query": q, "reply": "", "operators": ["transform", "mask"], "scenario": scenario, "turns": [q], "clarify": [],
            "steps": [{"tool": "search_orders", "arguments": {"status": "shipped"}, "text": "Find the shipped orders", "turn": 0, "depends_on": []},
                      {"tool": "get_order", "arguments": {"order_id": "{{step1.order_id}}"}, "text": "Open one", "turn": 0, "depends_on": [0]},
                      {"tool": "request_refund", "arguments": {"order_id": "{{step2.order_id}}", "reason": "broken"}, "text": "Refund it", "turn": 0,
                       "depends_on": [1], "condition": {"field": "refundable", "op": "==", "value": True, "step": 1} if scenario == "condition" else None},
                      {"tool": "get_weather", "arguments": {}, "text": "Check the weather", "turn": 0, "depends_on": []}]}

def test_transitions_and_bindings():
    box = SIM.ToolBox(SIM.demo_catalog())
    seen = Counter()
    for i in range(200):
        traj = tp.build_trajectory(_plan(), box, seed=i, rng=random.Random(i))
        assert tp.audit_trajectory(traj, box, [t.name for t in box.tools]) == []
        ev = [e for e in traj["events"] if e["kind"] != "user"]
        seen.update(e["transition"] for e in ev)
        assert ev[-1]["transition"] == "termination" and ev[-1]["calls"] == []
        for e in ev:
            for c in e["calls"]:
                if c["name"] in ("get_order", "request_refund"): assert c["bindings"] and c["arguments"]["order_id"] == c["bindings"][0]["value"]
        called = [c["step"] for e in ev for c in e["calls"]]
        assert not set(called) & set(traj["skipped_steps"]) and sorted(called + traj["skipped_steps"]) == [0, 1, 2, 3]
        assert traj["skipped_steps"] in ([], [2])                                             # only the conditional refund may be skipped
        assert any(e["kind"] == "clarification" for e in ev)                                  # get_weather lacks its city
    assert set(seen) == set(tp.TRANSITIONS), seen

def _pay_box():
    pay = SIM.DemoTool("pay_order", "Pay for an order.", SIM._obj({"order_id": {"type": "string"}}, ["order_id"]),
                       SIM._obj({"order_id": {"type": "string"}, "success": {"type": "boolean"}}, ["order_id", "success"]))
    plan = {"query": "Find my shipped orders and pay for the first one.", "scenario": "dependency", "operators": [], "clarify": [],
            "steps": [{"tool": "search_orders", "arguments": {"status": "shipped"}, "text": "Find the shipped orders", "turn": 0, "depends_on": []},
                      {"tool": "pay_order", "arguments": {"order_id": "{{step1.order_id}}"}, "text": "Pay for the first order", "turn": 0, "depends_on": [0]}]}
    return SIM.ToolBox(SIM.demo_catalog() + [pay]), plan

def test_a_failed_call_is_retried_never_reported_done():
    box, plan = _pay_box()
    with pytest.raises(Reject, match="call_failed"): tp.build_trajectory(plan, box, seed=0, rng=random.Random(0), failure_rate=1.0)
    retried = 0
    for sd in range(60):
        try: traj = tp.build_trajectory(plan, box, seed=sd, rng=random.Random(sd), failure_rate=0.5)
        except Reject as r: assert r.reason == "call_failed"; continue
        flags = [o["success"] for e in traj["events"] for o in e.get("observations", ()) if "success" in o]
        assert flags in ([True], [False, True])
        if flags == [False, True]:
            retried += 1
            acts = [e for e in traj["events"] if e["kind"] == "action"]
            assert acts[-1]["calls"][0]["name"] == "pay_order" and "did not go through" in acts[-1]["think"] and "pay_order" in acts[-1]["think"]
            assert tp.audit_trajectory(traj, box, [t.name for t in box.tools]) == []
            s = tp.trajectory_sample(dict(traj, plan_tools=["search_orders", "pay_order"]), box, random.Random(sd), "x", [])
            from magicagent.synth.checks import claim_problems
            assert claim_problems(s) == []
    assert retried >= 5, retried

def test_audit_catches_inconsistent_reasoning():
    box = SIM.ToolBox(SIM.demo_catalog())
    traj = tp.build_trajectory(_plan("general"), box, seed=1, rng=random.Random(1))
    act = next(e for e in traj["events"] if e["kind"] == "action")
    act["think"] = act["think"].replace(act["calls"][0]["name"], "the tool") + " check_stock might help."
    probs = tp.audit_trajectory(traj, box, [t.name for t in box.tools])
    assert any(p.startswith("tool_not_reasoned") for p in probs) and any(p.startswith("unrelated_tool") for p in probs)

def test_distractors_near_but_not_used():
    used = ["search_flights", "book_flight"] if "search_flights" in BOX else NAMES[:2]
    d = tp.choose_distractors(BOX, used, random.Random(0), k=4)
    assert len(d) == 4 and not set(d) & set(used)
    E = tp.catalog_embeddings(BOX); idx = {n: i for i, n in enumerate(NAMES)}
    sims = (E[[idx[u] for u in used]] @ E[[idx[x] for x in d]].T).max(0)
    assert (sims >= 0.25).all() and (sims < 0.9).all()

# ---- 10,000 emitted samples, determinism across workers ----

@pytest.fixture(scope="module")
def samples():
    m = {}
    out = list(iter_samples("tool_planning", 10_000, seed=0, manifest=m, progress=False))
    return out, m

def test_ten_thousand_samples_valid(samples):
    out, m = samples
    assert len(out) == 10_000, m
    ids = set()
    trans, scen = Counter(), Counter()
    for s in out:
        validate_sample(s.to_dict())
        tp.check_sample(s)
        ans = parse_tool_planning(s.target)
        assert ans["tools"] == s.gold["tools"]
        names = {t["function"]["name"] for t in s.tools}
        assert set(ans["tools"]) <= names and len(names) == len(s.tools)
        assert set(s.meta["distractors"]) <= names
        ids.add(s.id); trans[s.gold["transition"]] += 1; scen[s.scenario] += 1
    assert len(ids) == 10_000
    assert set(trans) == set(tp.TRANSITIONS), trans
    assert sum(m["rejected"].values()) + m["accepted"] == m["stages"]["candidates"]

def test_same_bytes_one_and_two_workers(same_bytes_one_and_two_workers):
    "In-process with one worker, through the CLI with two: the same bytes."
    same_bytes_one_and_two_workers("tool_planning", 300, seed=3)

def test_llm_teacher_refused_clearly():
    with pytest.raises(ValueError, match="template teacher"): tp.make_sample(0, 0, teacher="llm")
