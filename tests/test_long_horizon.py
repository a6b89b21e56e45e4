"Long-horizon tool execution (§3.5): task construction, episodes, labels, widening, and 10,000 emitted samples."
import json, random, sys
from collections import Counter
import pytest

from magicagent.core import validate_sample
from magicagent.formats import parse_long_horizon
from magicagent.synth.base import iter_samples, Reject
from magicagent.synth import long_horizon as lh
from magicagent.synth import simulator as SIM
from magicagent.synth.tools import load_catalog

BOX = SIM.ToolBox(load_catalog())

def _demo():
    box = SIM.ToolBox(SIM.demo_catalog())
    plans = [{"query": "Find my shipped orders and open the first one.", "reply": "Here it is.",
              "steps": [{"tool": "search_orders", "arguments": {}, "text": "Find the orders"},
                        {"tool": "get_order", "arguments": {"order_id": "{{step1.order_id}}"}, "text": "Open the first one"}]},
             {"query": "Refund order O-12, it broke; is product P-7 in stock?", "reply": "Refund filed.",
              "steps": [{"tool": "request_refund", "arguments": {"order_id": "O-12", "reason": "it broke"}, "text": "Refund order O-12"},
                        {"tool": "check_stock", "arguments": {"product_id": "P-7"}, "text": "Check product P-7"}]},
             {"query": "And the weather tomorrow?", "reply": "Forecast ready.",
              "steps": [{"tool": "get_weather", "arguments": {"date": "2026-03-03"}, "text": "Get the forecast"}]}]
    it = iter(json.loads(json.dumps(plans * 10)))
    return box, lambda rng, catalog=None: next(it)

def test_task_threshold_and_no_repetition():
    box, sampler = _demo()
    task = lh.build_task(random.Random(0), box, sampler, difficulty=1)
    assert len(task["tools"]) >= lh.DIFFICULTY_MIN_TOOLS[1] and len(set(task["tools"])) == len(task["tools"])
    for a in task["atomic"]: assert a["query"] not in task["request"]          # the request is vague, not the queries glued
    with pytest.raises(Reject, match="task_too_small"): lh.build_task(random.Random(0), box, _demo()[1], difficulty=3, max_draws=5)
    with pytest.raises(ValueError, match="difficulty"): lh.build_task(random.Random(0), box, sampler, difficulty=9)

def test_episode_success_failure_and_chaining():
    box, sampler = _demo()
    task = lh.build_task(random.Random(0), box, sampler, difficulty=1)
    ep = lh.run_episode(task, box, task["tools"] + ["get_weather"], seed=3, rng=random.Random(1))
    assert ep["label"] == "success" and ep["events"][-1]["kind"] == "final" and lh.postprocess(ep, box) == []
    calls = [e for e in ep["events"] if e.get("kind") == "call"]
    got = next(e for e in calls if e["name"] == "get_order")
    assert got["bindings"] and got["arguments"]["order_id"] == got["bindings"][0]["value"]                 # chained from search_orders
    ask = next(e for e in ep["events"] if e.get("kind") == "clarify")                    # search_orders lacks its status
    assert ask["for_tool"] == "search_orders" and "status" in ask["arguments"]["content"]
    answer = ep["events"][ep["events"].index(ask) + 1]
    assert answer["role"] == "user" and answer["answers"]["status"] in ("open", "shipped", "delivered")
    short = lh.run_episode(task, box, task["tools"], seed=3, rng=random.Random(1), max_steps=3)
    assert short["label"] == "failure" and short["failure_reason"] == "step_limit" and short["turns"] == 3
    spent = lh.run_episode(task, box, task["tools"][:-1], seed=3, rng=random.Random(1))  # all 3 candidates used, a request left
    assert spent["label"] == "failure" and spent["failure_reason"] == "tools_exhausted"
    first = task["atomic"][0]["steps"][0]["tool"]
    missing = lh.run_episode(task, box, [t for t in task["tools"] if t != first] + ["get_weather"], seed=3, rng=random.Random(1))
    assert missing["label"] == "failure" and missing["failure_reason"] == "tool_missing"

def _pay_task():
    "A demo task whose first request is one call of a tool with a `success` flag."
    box, sampler = _demo()
    pay = SIM.DemoTool("pay_order", "Pay for an order.", SIM._obj({"order_id": {"type": "string"}}, ["order_id"]),
                       SIM._obj({"order_id": {"type": "string"}, "success": {"type": "boolean"}}, ["order_id", "success"]))
    box = SIM.ToolBox(SIM.demo_catalog() + [pay])
    first = [{"query": "Pay order O-12 now.", "reply": "Paid.", "steps": [{"tool": "pay_order", "arguments": {"order_id": "O-12"}, "text": "Pay order O-12"}]}]
    def plans(rng, catalog=None): return first.pop() if first else sampler(rng, catalog)
    return box, lh.build_task(random.Random(0), box, plans, difficulty=1)

def test_a_failed_call_is_retried_or_reported_and_labelled():
    from magicagent.synth.checks import claim_problems
    box, task = _pay_task()
    cand = task["tools"] + ["get_weather"]
    bad = lh.run_episode(task, box, cand, seed=1, rng=random.Random(1), failure_rate=1.0)        # fails, fails again: reported
    assert bad["label"] == "failure" and bad["failure_reason"] == "tool_failed"
    last = bad["events"][-1]
    assert last["name"] == "reply" and "not done" in last["arguments"]["content"] and "fulfilled" not in last["think"]
    ok = lh.run_episode(task, box, cand, seed=1, rng=random.Random(1), failure_rate=0.0)
    assert ok["label"] == "success" and [e.get("observation", {}).get("success") for e in ok["events"] if e.get("name") == "pay_order"] == [True]
    retried = 0
    for sd in range(40):
        ep = lh.run_episode(task, box, cand, seed=sd, rng=random.Random(sd), failure_rate=0.5)
        flags = [e["observation"]["success"] for e in ep["events"] if e.get("name") == "pay_order"]
        assert ep["label"] == ("failure" if flags == [False, False] else "success"), (flags, ep["label"])
        if flags == [False, True]: retried += 1
        for k, e in enumerate(ep["events"]):                                         # no turn claims success over an open failure
            if e["role"] == "assistant":
                s = lh.turn_sample(task, ep, k, box, "x", meta={"label": ep["label"]})
                assert claim_problems(s) == [], (sd, k)
    assert retried >= 3

def test_scaling_makes_a_new_similar_task():
    from magicagent.synth.decomposition import sample_plan, similar_plan
    r = random.Random(3)
    task = lh.build_task(r, BOX, sample_plan, difficulty=2)
    new = lh.similar_task(task, BOX, r, similar_plan)
    assert new["tools"] == task["tools"] and len(new["atomic"]) == len(task["atomic"])
    assert new["request"] != task["request"] and [a["query"] for a in new["atomic"]] != [a["query"] for a in task["atomic"]]
    for a, b in zip(task["atomic"], new["atomic"]):
        assert [s["tool"] for s in a["steps"]] == [s["tool"] for s in b["steps"]] and set(a["answers"]) == set(b["answers"])

def test_picked_turns_follow_different_user_messages():
    box, sampler = _demo()
    task = lh.build_task(random.Random(0), box, sampler, difficulty=1)
    ep = lh.run_episode(task, box, task["tools"] + ["get_weather"], seed=3, rng=random.Random(1))
    turns = lh.pick_turns(ep, random.Random(0))
    users = [sum(e["role"] == "user" for e in ep["events"][:k]) for k in turns]
    segments = {sum(e["role"] == "user" for e in ep["events"][:k]) for k, e in enumerate(ep["events"]) if e["role"] == "assistant"}
    assert sorted(users) == sorted(segments) and all(ep["events"][k]["role"] == "assistant" for k in turns)

def test_postprocess_rejects_bad_turns():
    box, sampler = _demo()
    task = lh.build_task(random.Random(0), box, sampler, difficulty=1)
    ep = lh.run_episode(task, box, task["tools"] + ["get_weather"], seed=3, rng=random.Random(1))
    bad = json.loads(json.dumps(ep))
    call = next(e for e in bad["events"] if e.get("kind") == "call")
    call["arguments"] = {}
    call["think"] = call["think"].replace(call["name"], "it") + " Perhaps check_stock."
    probs = lh.postprocess(bad, box)
    kinds = {p.split(":")[0] for p in probs}
    assert {"arguments", "reasoning"} <= kinds and any(call["name"] in p for p in probs)

def test_widened_candidates_are_related_and_new():
    task_tools = [["search_flights", "book_flight"], ["get_weather_forecast"]] if "search_flights" in BOX else [[t.name] for t in BOX.tools[:2]]
    more = lh.related_tools(BOX, task_tools, 6)
    assert len(more) == 6 and not set(more) & {x for g in task_tools for x in g}

@pytest.fixture(scope="module")
def samples():
    m = {}
    return list(iter_samples("long_horizon", 10_000, seed=0, manifest=m, progress=False)), m

def test_ten_thousand_samples_valid(samples):
    out, m = samples
    assert len(out) == 10_000, m
    kinds, origins, labels = Counter(), Counter(), Counter()
    for s in out:
        validate_sample(s.to_dict())
        lh.check_sample(s)
        call = parse_long_horizon(s.target)
        assert {"name": call["name"], "arguments": call["arguments"]} == s.gold
        assert s.tools[0]["function"]["name"] == "reply"
        roles = [x["role"] for x in s.messages]
        assert roles[0] == "system" and roles[-1] == "assistant" and "user" in roles
        n_tool_calls = sum(1 for x in s.messages[:-1] if x["role"] == "assistant" and '"name": "reply"' not in x["content"])
        assert roles.count("tool") == n_tool_calls                                     # every tool call has its result message
        kinds[s.meta["kind"]] += 1; origins[s.meta["origin"]] += 1; labels[s.meta["label"]] += 1
    assert set(kinds) == {"ask", "call", "clarify", "final"}, kinds
    assert set(origins) == {"seed", "scaled"} and set(labels) == {"success"}
    assert len({s.id for s in out}) == 10_000
    assert sum(m["rejected"].values()) + m["accepted"] == m["stages"]["candidates"]

def test_same_bytes_one_and_two_workers(same_bytes_one_and_two_workers):
    "In-process with one worker, through the CLI with two: the same bytes."
    same_bytes_one_and_two_workers("long_horizon", 200, seed=5)

def test_llm_teacher_refused_clearly():
    with pytest.raises(ValueError, match="template teacher"): lh.make_sample(0, 0, teacher="llm")
