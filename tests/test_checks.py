"Data that tells the truth: the four checkers on hand-made records, the text helpers, and every generator's output at a smaller size."
import json
import pytest
from hypothesis import given, settings, strategies as st

from magicagent.core import Sample
from magicagent.formats import render_long_horizon, render_tool_planning
from magicagent.synth.base import iter_samples, Reject
from magicagent.synth import checks as C

def _lh(turns, label="success", kind="final"):
    msgs = [{"role": "system", "content": "…"}, {"role": "user", "content": "Pay my order O-1, please."}]
    for t in turns:
        if isinstance(t, dict): msgs.append({"role": "tool", "content": json.dumps(t)})
        else: msgs.append({"role": "assistant", "content": render_long_horizon({"think": t[0], "name": t[1], "arguments": t[2]})})
    return Sample(id="x", task="long_horizon", messages=msgs, gold={}, meta={"label": label, "kind": kind})

CALL = ("I call pay_order.", "pay_order", {"order_id": "O-1"})
FAIL = {"name": "pay_order", "result": {"order_id": "O-1", "success": False}}
OK = {"name": "pay_order", "result": {"order_id": "O-1", "success": True}}
DONE = ("Request 1 is fulfilled.", "reply", {"content": "All done: order O-1 is paid."})
SORRY = ("pay_order failed again; I tell the user.", "reply", {"content": "I'm sorry: the payment did not go through, so it is not done."})

def test_call_failure_reads_results():
    assert C.call_failure({"success": False}) and C.call_failure({"error": "not_found"}) and C.call_failure({"status": "Failed"})
    assert C.call_failure({"success": True, "status": "confirmed"}) is None and C.call_failure("text") is None

@pytest.mark.parametrize("turns,label,n", [
    ([CALL, FAIL, DONE], "success", 3),                 # the think and the reply claim it, and the label says success
    ([CALL, FAIL, CALL, OK, DONE], "success", 0),       # retried and succeeded
    ([CALL, FAIL, CALL, FAIL, SORRY], "failure", 0),    # reported, labelled failure
    ([CALL, FAIL, SORRY], "success", 1),                # honest reply, but the label disagrees
])
def test_claims_agree_with_results(turns, label, n):
    assert len(C.claim_problems(_lh(turns, label))) == n

def test_claims_over_a_tool_planning_trajectory():
    ev = [{"kind": "user", "content": "Pay it."},
          {"kind": "action", "calls": [{"name": "pay_order"}], "observations": [{"success": False}]},
          {"kind": "termination", "calls": [], "observations": [], "think": "All requested steps are done."}]
    msgs = [{"role": "system", "content": "…"}, {"role": "user", "content": "Pay it."},
            {"role": "assistant", "content": render_tool_planning({"think": "All requested steps are done.", "tools": []})}]
    s = Sample(id="t", task="tool_planning", messages=msgs, gold={}, meta={"trajectory": {"events": ev}})
    assert [p.split(":")[0] for p in C.claim_problems(s)] == ["termination_after_failure"]
    ev.insert(2, {"kind": "action", "calls": [{"name": "pay_order"}], "observations": [{"success": True}]})
    assert C.claim_problems(s) == []

def _dec(user, plan, reply, args=(), tools=()):
    return Sample(id="d", task="decomposition", gold={}, tools=[{"type": "function", "function": {"name": n, "description": "…", "parameters": {}}} for n in tools],
                  messages=[{"role": "system", "content": "…"}, {"role": "user", "content": user},
                            {"role": "assistant", "content": f"<Plan>{' '.join(f'Step{i}.{p}' for i, p in enumerate(plan, 1))}</Plan><Reply>{reply}</Reply>"}],
                  meta={"plan": {"steps": [{"arguments": dict(args)}]}})

def test_person():
    assert C.person_problems(_dec("Add it to my cart.", ["Add product P-1 to the user's cart."], "Sure. Here is my plan.")) == []
    found = C.person_problems(_dec("x", ["Add product P-1 to my cart.", "Remind me at 9:00."], "Let's start with my inbox."))
    assert len(found) == 3
    assert C.person_problems(_dec("x", ["Search notes for 'my plans'."], "Sure.", {"query": "my plans"})) == []   # a value, not the assistant's words

def test_number():
    bad = _dec("Buy 1 shares and book 3 night; add 1 checked bags.", ["Buy 1 share of AAPL."], "Sure.")
    assert len(C.number_problems(bad)) == 3
    ok = _dec("Do step 1 first, then 2 flight days, 1.5 stars, 1 of product P-1, -87.1 degrees, Step1 is fine.", ["Buy 2 shares of AAPL."], "I'll handle the other 2 steps.")
    assert C.number_problems(ok) == []

def test_identifiers():
    tools = ["get_return_status", "cancel_hotel_reservation"]
    bad = _dec("x", ["Check the status of return R-1 and its refund_amount."], "Sure. The first one is get return status.", tools=tools)
    assert len(C.identifier_problems(bad)) == 2
    ok = _dec("x", ["Cancel hotel reservation RS-1."], "Sure. I'll cancel hotel reservation RS-1 first.", {"reservation_id": "RS-1"}, tools=tools)
    assert C.identifier_problems(ok) == []

def test_check_data_rejects_with_the_check_named():
    with pytest.raises(Reject) as e: C.check_data(_lh([CALL, FAIL, DONE]))
    assert e.value.reason == "data_claims"
    C.check_data(_lh([CALL, FAIL, CALL, OK, DONE]))

def test_voice_and_number_helpers():
    assert C.voice("remind me to call my mother", "plan") == "remind the user to call their mother"
    assert C.voice("check if I'm free", "you") == "check if you're free"
    assert C.agree("buy {n} shares", "n", 1) == "buy {n} share" and C.agree("buy {n} shares", "n", 7) == "buy {n} shares"
    assert [C.plural(n, "night") for n in (1, 2)] == ["1 night", "2 nights"]

@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["you", "plan"]))
def test_voice_leaves_text_without_first_person_alone(text, person):
    if not C._FIRST.search(text): assert C.voice(text, person) == text

@pytest.mark.parametrize("task", ["decomposition", "tool_planning", "scheduling", "orchestration", "long_horizon"])
def test_generated_data_has_no_findings(task):
    "At a smaller size than tests/perf/data_checks.py (10,000 per task): no candidate rejected by a check, no finding in the output."
    m = {}
    out = list(iter_samples(task, 150, seed=11, manifest=m, progress=False))
    assert len(out) == 150
    assert not {k: v for k, v in m["rejected"].items() if k.startswith("data_")}, m["rejected"]
    assert [p for s in out for p in C.sample_problems(s)] == []

def test_long_horizon_user_prompts_rarely_repeat():
    "§3.5 scales by new tasks: at most 1% of 300 samples of one seed repeat another sample's user turns."
    out = list(iter_samples("long_horizon", 300, seed=0, progress=False))
    seen, rep = set(), 0
    for s in out:
        key = tuple(m["content"] for m in s.messages if m["role"] == "user")
        rep += key in seen; seen.add(key)
    assert rep <= 3, rep
