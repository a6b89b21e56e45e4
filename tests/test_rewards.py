"""The unified multi-task reward (§4.2.1): hand-worked examples of every component, TRL's
reward-function signature, ten thousand adversarial completions per task, and two steps of TRL's
GRPOTrainer over a mixed-task dataset of Sample records."""
import json, math, random, sys, zlib
import numpy as np
import pytest

from magicagent import rewards as R
from magicagent.core import GoldError, Sample, STATIC_TASKS
from magicagent.magiceval import magiceval
from magicagent.models import Embedder, get_embedder
from magicagent.formats import render

from magicagent.synth import scheduling as SCH


class FirstWord:
    "Embedder with exact similarities: texts sharing their first word have cosine 1, all others 0; counts its calls."
    def __init__(self): self.vocab, self.calls, self.texts = {}, 0, 0
    def encode(self, texts, **kw):
        self.calls += 1; self.texts += len(texts)
        out = np.zeros((len(texts), 256), np.float32)
        for i, t in enumerate(texts): out[i, self.vocab.setdefault((t.split() or [""])[0], len(self.vocab)) % 256] = 1
        return out


def reward(tasks, **kw):
    return R.UnifiedReward(tasks=tasks, embedder=Embedder(FirstWord()), **kw)


def bd(r, task, text, gold): return r.breakdowns([text], [task], [gold])[0]


# ---------------------------------------------------------------- golds
DEC = {"steps": ["Search flights from Paris to Rome", "Book the cheapest flight"], "reply": "Your flight is booked."}
TP = {"tools": ["search_hotels", "book_hotel"]}
WF = {"nodes": ["a find", "b open", "c read"], "edges": [[0, 1], [1, 2], [2, 3], [3, 4]]}
LH = {"name": "get_weather", "arguments": {"city": "Lyon", "days": 2, "units": {"temp": "C"}}}
REPLY = {"name": "reply", "arguments": {"content": "Which city do you mean?"}}


def scheduling_samples():
    out = []
    for sub in ("trip", "meeting", "calendar"):
        for i in range(200):
            try: out.append(SCH.make_sample(i, 0, subtask=sub)); break
            except Exception: continue
    return out


# ---------------------------------------------------------------- hand-worked components
def test_decomposition():
    r = reward(["decomposition"])
    ok = render("decomposition", DEC)
    assert bd(r, "decomposition", ok, DEC) == {"format": 1.0, "content": 1.0, "total": 2.0}
    # same first words (cosine 1 under the toy embedder) -> content 1
    assert bd(r, "decomposition", "<Plan>Step1.Search trains Step2.Book it</Plan><Reply>Your trip.</Reply>", DEC)["content"] == 1.0
    # a step below tau_step, or the reply below tau_reply -> 0
    assert bd(r, "decomposition", "<Plan>Step1.Search trains Step2.Cancel it</Plan><Reply>Your trip.</Reply>", DEC)["content"] == 0.0
    assert bd(r, "decomposition", "<Plan>Step1.Search trains Step2.Book it</Plan><Reply>Done.</Reply>", DEC)["content"] == 0.0
    # wrong step count -> 0 whatever the texts
    assert bd(r, "decomposition", "<Plan>Step1.Search flights from Paris to Rome</Plan><Reply>Your flight is booked.</Reply>", DEC)["content"] == 0.0
    # format broken -> 0 and 0
    assert bd(r, "decomposition", ok.replace("Step2", "Step3"), DEC) == {"format": 0.0, "content": 0.0, "total": 0.0}
    # thresholds are parameters
    loose = reward(["decomposition"], tau_step=-1.0, tau_reply=-1.0)
    assert bd(loose, "decomposition", "<Plan>Step1.x Step2.y</Plan><Reply>z</Reply>", DEC)["content"] == 1.0


def test_decomposition_real_embedder_thresholds():
    r = R.UnifiedReward(tasks=["decomposition"])
    close = "<Plan>Step1.Look for flights from Paris to Rome Step2.Book the cheapest flight</Plan><Reply>Your flight has been booked.</Reply>"
    far = "<Plan>Step1.Water the plants Step2.Book the cheapest flight</Plan><Reply>Your flight is booked.</Reply>"
    assert [b["content"] for b in r.breakdowns([close, far], ["decomposition"] * 2, [DEC] * 2)] == [1.0, 0.0]


def test_tool_planning_identity_and_order():
    r = reward(["tool_planning"])
    t = lambda tools: f"<think>plan</think><action>ToolList:[{', '.join(tools)}]</action>"
    assert [b["total"] for b in r.breakdowns([t(["search_hotels", "book_hotel"]), t(["book_hotel", "search_hotels"]),
                                              t(["search_hotels"]), t(["search_hotels", "book_hotel", "pay"]), "ToolList:[search_hotels]"],
                                             ["tool_planning"] * 5, [TP] * 5)] == [2.0, 1.0, 1.0, 1.0, 0.0]


def test_orchestration_modes_hand_worked():
    # pred b, a, c against gold a -> b -> c (toy embedder: first words a/b/c match)
    pred = "Node:\n1: b x\n2: a x\n3: c x\nEdge: (START,1) (1,2) (2,3) (3,END)"
    chain = bd(reward(["orchestration"], orchestration_mode="chain"), "orchestration", pred, WF)["content"]
    graph = bd(reward(["orchestration"], orchestration_mode="graph", orchestration_variant="official"), "orchestration", pred, WF)["content"]
    mean = bd(reward(["orchestration"], orchestration_variant="official"), "orchestration", pred, WF)["content"]
    strict = bd(reward(["orchestration"], orchestration_mode="graph"), "orchestration", pred, WF)["content"]
    assert chain == pytest.approx(2 / 3)      # LIS of mapped gold indices 1, 0, 2 has length 2
    assert graph == 1.0                       # raw index pairs: every pred edge "appears" among gold edges
    assert mean == pytest.approx(5 / 6)
    assert strict == pytest.approx(2 / 5)     # mapped: only (c, END) is a gold edge -> component of 2 of 5 nodes
    assert bd(reward(["orchestration"]), "orchestration", pred, WF)["content"] == pytest.approx((2 / 3 + 2 / 5) / 2)   # the default: strict mean
    # one irrelevant node: officially chain P = 1 (the DP starts at 1) and START/END match; strictly nothing
    junk = "Node:\n1: zz\nEdge: (START,1) (1,END)"
    assert bd(reward(["orchestration"], orchestration_variant="official"), "orchestration", junk, WF)["content"] > 0.3
    assert bd(reward(["orchestration"]), "orchestration", junk, WF)["content"] == 0.0
    assert bd(reward(["orchestration"]), "orchestration", render("orchestration", WF), WF)["total"] == 2.0
    assert bd(reward(["orchestration"]), "orchestration", "Node:\n1: a\nEdge:", WF)["total"] == 0.0


def test_orchestration_runaway_workflow_is_not_embedded():
    fw = FirstWord(); r = R.UnifiedReward(tasks=["orchestration"], embedder=Embedder(fw), max_workflow_nodes=10)
    big = render("orchestration", {"nodes": [f"n{i} step" for i in range(11)], "edges": [[0, 1]]})
    assert bd(r, "orchestration", big, WF) == {"format": 1.0, "content": 0.0, "total": 1.0} and fw.calls == 0
    assert r.stats["orchestration/too_many_nodes"] == 1


def test_long_horizon():
    r = reward(["long_horizon"])
    call = lambda name, args: f'<think>t</think><tool_call>{json.dumps({"name": name, "arguments": args})}</tool_call>'
    assert bd(r, "long_horizon", call("get_weather", {"units": {"temp": "C"}, "days": 2.0, "city": "Lyon"}), LH)["total"] == 2.0
    assert bd(r, "long_horizon", call("get_weather", {"city": "Lyon", "days": 2}), LH)["total"] == 1.0        # missing argument
    assert bd(r, "long_horizon", call("get_weather", {"city": "Lyon", "days": True, "units": {"temp": "C"}}), LH)["total"] == 1.0
    assert bd(r, "long_horizon", call("get_forecast", LH["arguments"]), LH)["total"] == 1.0
    assert bd(r, "long_horizon", '<think>t</think><tool_call>{"name": "get_weather", "arguments": {"city": "Lyon",}}</tool_call>', LH)["total"] == 0.0
    # args given as a JSON string are parsed (formats contract)
    assert bd(r, "long_horizon", call("get_weather", json.dumps(LH["arguments"])), LH)["content"] == 1.0
    # the reply tool: cosine of contents (1 or 0 under the toy embedder), clipped to [0, 1]
    assert bd(r, "long_horizon", call("reply", {"content": "Which one?"}), REPLY)["content"] == 1.0
    assert bd(r, "long_horizon", call("reply", {"content": "Sure, done."}), REPLY)["content"] == 0.0
    assert bd(r, "long_horizon", call("reply", {"content": 3}), REPLY)["content"] == 0.0
    assert bd(r, "long_horizon", call("get_weather", LH["arguments"]), REPLY)["content"] == 0.0
    real = R.UnifiedReward(tasks=["long_horizon"])
    c = bd(real, "long_horizon", call("reply", {"content": "For which city do you want it?"}), REPLY)["content"]
    assert 0.5 < c < 1.0


def test_scheduling_uses_verify_schedule():
    r = reward(["scheduling"])
    samples = scheduling_samples()
    assert {s.subtask for s in samples} == {"trip", "meeting", "calendar"}
    for s in samples:
        assert bd(r, "scheduling", s.target, s.gold) == {"format": 1.0, "content": 1.0, "total": 2.0}
        wrong = s.target.replace("<answer>", "<answer>Nothing fits. ").split("<answer>")[0] + "<answer>No schedule works.</answer>"
        assert bd(r, "scheduling", wrong, s.gold) == {"format": 1.0, "content": 0.0, "total": 1.0}
        assert bd(r, "scheduling", s.target.replace("</answer>", ""), s.gold)["format"] == 0.0
    with pytest.raises(GoldError, match="scheduling gold"):
        bd(r, "scheduling", samples[0].target, {"subtask": "trip"})


def test_scheduling_verifier_contract(monkeypatch):
    "Only a GoldError from the verifier is a gold error; whatever it says in text, or any other exception, scores 0."
    r = reward(["scheduling"])
    s = scheduling_samples_cache()[0]
    def broken_gold(gold, answer): raise GoldError("scheduling gold: instance lacks `stays`")
    monkeypatch.setattr(R, "verify_schedule", broken_gold)
    with pytest.raises(GoldError, match="lacks `stays`"): bd(r, "scheduling", s.target, s.gold)
    monkeypatch.setattr(R, "verify_schedule", lambda gold, answer: ["invalid gold: this is only text"])
    assert bd(r, "scheduling", s.target, s.gold) == {"format": 1.0, "content": 0.0, "total": 1.0}   # never read from the message
    def odd(gold, answer): raise KeyError("a completion the verifier could not read")
    monkeypatch.setattr(R, "verify_schedule", odd)
    with pytest.warns(UserWarning, match="scheduling/checker_raised"):
        assert bd(r, "scheduling", s.target, s.gold)["content"] == 0.0
    assert r.stats["scheduling/checker_raised"] == 1
    # a gold broken on purpose is refused by the check before the verifier runs
    with pytest.raises(GoldError, match="`instance`"): bd(r, "scheduling", s.target, {"subtask": "trip", "instance": "x"})
    with pytest.raises(GoldError, match="num_met"): bd(r, "scheduling", s.target, {"subtask": "meeting", "instance": {}, "solution": {}})


def test_registry_one_place_per_task():
    import inspect
    assert sorted(R.TASK_REWARDS) == sorted(STATIC_TASKS)
    for t, piece in R.TASK_REWARDS.items():
        assert callable(piece.check) and callable(piece.content) and callable(piece.texts)
    assert {t for t, p in R.TASK_REWARDS.items() if p.metrics} == {"decomposition", "tool_planning", "long_horizon"}
    src = inspect.getsource(R)
    assert "task ==" not in src and "t ==" not in src          # looked up by name, no per-task chains
    assert R.GoldError is GoldError                            # the one gold error type, importable from both
    # a new task is one registration away
    R.register("echo", check=lambda g: None, content=lambda p, g, ctx: float(p == g.get("text")))
    try:
        monkey = dict(R.PARSERS)
        R.PARSERS["echo"] = lambda text: text
        assert R.UnifiedReward(["echo"], embedder=Embedder(FirstWord()))(["hi", "no"], task=["echo"] * 2, gold=[{"text": "hi"}] * 2) == [2.0, 1.0]
    finally:
        R.TASK_REWARDS.pop("echo"); R.PARSERS.clear(); R.PARSERS.update(monkey)


def test_unreadable_completions_are_counted():
    r = reward(["tool_planning", "long_horizon"])
    out = r(["", "<think>t</think><action>ToolList:[a]", '<think>t</think><tool_call>{"name": 3}</tool_call>'],
            task=["tool_planning", "tool_planning", "long_horizon"], gold=[TP, TP, LH])
    assert out == [0.0, 0.0, 0.0]
    assert dict(r.stats) == {"tool_planning/unreadable": 2, "long_horizon/unreadable": 1}


def test_gold_checks_by_task():
    ok = render("orchestration", WF)
    for bad, msg in [({"nodes": ["a"], "edges": [[0, 5]]}, "not a pair of node indices"), ({"nodes": ["a"], "edges": [[0, True]]}, "not a pair"),
                     ({"nodes": ["a", "b"], "edges": [[1, 2], [2, 1]]}, "cycle")]:
        with pytest.raises(GoldError, match=msg): R.check_gold("orchestration", bad)
    with pytest.raises(GoldError, match="arguments"): R.check_gold("long_horizon", {"name": "f", "arguments": [1]})
    with pytest.raises(GoldError, match="content"): R.check_gold("long_horizon", {"name": "reply", "arguments": {}})
    with pytest.raises(GoldError, match="tool names"): R.check_gold("tool_planning", {"tools": [1]})
    assert R.check_gold("long_horizon", {"name": "f"}) == {"name": "f"}        # no arguments: compared with {}
    assert R.check_gold("orchestration", json.dumps(WF)) == WF and ok


def test_weights_and_config_errors():
    r = reward(["tool_planning"], format_weight=0.5, content_weight=2.0)
    assert r(["<think>t</think><action>ToolList:[search_hotels,book_hotel]</action>"], task=["tool_planning"], gold=[TP]) == [2.5]
    with pytest.raises(ValueError, match="orchestration_mode"): R.RewardConfig(orchestration_mode="both")
    with pytest.raises(ValueError, match="variant"): R.RewardConfig(orchestration_variant="loose")
    with pytest.raises(ValueError, match="tau_step"): R.RewardConfig(tau_step=2)


# ---------------------------------------------------------------- TRL signature and errors
def test_trl_signature_conversational_and_json_gold():
    r = reward(["tool_planning", "long_horizon"])
    logged = {}
    comps = [[{"role": "assistant", "content": "<think>t</think><action>ToolList:[search_hotels,book_hotel]</action>"}],
             [{"role": "assistant", "content": [{"type": "text", "text": '<think>t</think><tool_call>{"name": "reply", "arguments": {"content": "Which one?"}}</tool_call>'}]}],
             "garbage"]
    out = r(prompts=[[{"role": "user", "content": "q"}]] * 3, completions=comps, completion_ids=[[1]] * 3,
            task=["tool_planning", "long_horizon", "long_horizon"], gold=[json.dumps(TP), REPLY, json.dumps(LH)],
            scenario=["general"] * 3, trainer_state=None, log_extra=lambda *a: None, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [2.0, 2.0, 0.0]
    assert logged == {"reward/long_horizon/format": 0.5, "reward/long_horizon/content": 0.5,
                      "reward/tool_planning/format": 1.0, "reward/tool_planning/content": 1.0}
    assert R.unified_reward(["x"], task=["tool_planning"], gold=[TP]) == [0.0]
    assert R.reward_breakdown("tool_planning", "<think>t</think><action>ToolList:[search_hotels,book_hotel]</action>", TP)["total"] == 2.0


def test_bad_inputs_are_named():
    r = reward(["tool_planning", "orchestration", "decomposition", "long_horizon"])
    ok = "<think>t</think><action>ToolList:[a]</action>"
    with pytest.raises(GoldError, match="`tools`"): r([ok], task=["tool_planning"], gold=[{"tool": ["a"]}])
    with pytest.raises(GoldError, match="not JSON"): r([ok], task=["tool_planning"], gold=["{tools"])
    with pytest.raises(GoldError, match="nodes"): r([render("orchestration", WF)], task=["orchestration"], gold=[{"nodes": "a"}])
    with pytest.raises(GoldError, match="cycle"):
        r([render("orchestration", WF)], task=["orchestration"], gold=[{"nodes": ["a", "b"], "edges": [[0, 1], [1, 2], [2, 1], [2, 3]]}])
    with pytest.raises(GoldError, match="steps"): r([render("decomposition", DEC)], task=["decomposition"], gold=[{"steps": [1, 2], "reply": "r"}])
    with pytest.raises(ValueError, match="differ in length"): r([ok, ok], task=["tool_planning"], gold=[TP])
    with pytest.raises(ValueError, match="not among"): r([ok], task=["scheduling"], gold=[TP])
    with pytest.raises(ValueError, match="no reward for task"): R.UnifiedReward(tasks=["online"])


def test_embedding_cache_and_single_model_load():
    fw = FirstWord(); e = Embedder(fw, cache_size=3)
    e.encode(["a", "b", "a"]); assert (fw.calls, fw.texts) == (1, 2)          # batched, deduplicated
    e.encode(["b", "a"]); assert (fw.calls, e.hits) == (1, 3)                 # all cached
    e.encode(["c", "d"]); e.encode(["a"]); assert fw.texts == 4               # LRU: "a" was used last, "b" is evicted
    e.encode(["b"]); assert fw.texts == 5
    assert get_embedder("minilm") is get_embedder("minilm")
    assert get_embedder("minilm").model is get_embedder("minilm").model
    r = R.UnifiedReward(tasks=["decomposition"], embedder=Embedder(fw := FirstWord()))
    txt = render("decomposition", DEC)
    r([txt] * 50, task=["decomposition"] * 50, gold=[DEC] * 50)
    assert fw.calls == 1 and fw.texts == 3   # the 2 steps and the reply (completion = gold here), embedded once


def test_deterministic():
    r1, r2 = R.UnifiedReward(), R.UnifiedReward()
    texts, tasks, golds = [], [], []
    for t, g in [("decomposition", DEC), ("tool_planning", TP), ("orchestration", WF), ("long_horizon", LH)]:
        texts += [render(t, g | ({"think": "x"} if t in ("tool_planning", "long_horizon") else {})), "junk"]; tasks += [t, t]; golds += [g, g]
    assert r1(texts, task=tasks, gold=golds) == r2(texts, task=tasks, gold=golds)


# ---------------------------------------------------------------- MagicEval
def test_magiceval_by_scenario():
    S = lambda t, g, sc: Sample(id=f"{t}-x-000000", task=t, messages=[{"role": "user", "content": "q"}], gold=g, scenario=sc)
    samples = [S("decomposition", DEC, "general"), S("decomposition", DEC, "condition"), S("long_horizon", LH, "condition")]
    comps = [render("decomposition", DEC), "<Plan>Step1.x</Plan><Reply>y</Reply>",
             '<think>t</think><tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>']
    ev = magiceval(samples, comps, embedder=Embedder(FirstWord()), judge=lambda p: "Yes." if "Step2" in p.split("Candidate plan:")[1] else "no")
    assert ev["by_scenario"]["general"] == {"embed_acc": 1.0, "judge_acc": 1.0, "step_acc": 1.0, "n": 1}
    # 1 step against 2: "x" vs "Search", a missing step, "y" vs "Your" -> 0 / 3
    assert ev["by_scenario"]["condition"] == {"embed_acc": 0.0, "judge_acc": 0.0, "step_acc": 0.0, "tool_arg_acc": 0.0, "tool_name_acc": 1.0, "n": 2}
    assert "judge_acc" not in magiceval(samples[:1], comps[:1], embedder=Embedder(FirstWord()))["overall"]


# ---------------------------------------------------------------- fuzzing
TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<action>", "</action>", "<tool_call>", "</tool_call>",
        "<Plan>", "</Plan>", "<Reply>", "</Reply>", "Node:", "Edge:", "(START,1)", "(1,END)", "Step1.", "Step2.", "ToolList:[", "]"]
UNI = ["é", "漢", "🙂", "\u200b", "\ud800", "\x00", "\n", "\t", "{", "}", '"', "\\", ":", ",", "[", "(", ")"]


def mutate(rng, good):
    k = rng.randrange(12)
    if k == 0: return "".join(rng.choice(UNI + list("abc 12.")) for _ in range(rng.randrange(200)))
    if k == 1: return good[:rng.randrange(len(good) + 1)]
    if k == 2:
        i = rng.randrange(len(good) + 1); return good[:i] + rng.choice(TAGS) + good[i:]
    if k == 3: t = rng.choice(TAGS[:12:2]); return t + good + t.replace("<", "</")
    if k == 4:
        s = list(good)
        for _ in range(rng.randrange(1, 6)):
            if s: s[rng.randrange(len(s))] = rng.choice(UNI)
        return "".join(s)
    if k == 5: return good.replace("{", "", 1) if rng.random() < .5 else good.replace('"', "'")
    if k == 6: return good.replace("</", "<", 1)
    if k == 7: return good + rng.choice(TAGS) * rng.randrange(1, 4)
    if k == 8: return good.replace("Step2", "Step2. Step3.") if rng.random() < .5 else good.replace("(1,2)", "(1,99)")
    if k == 9:  # valid structure, shuffled words
        w = good.split(" "); rng.shuffle(w); return " ".join(w)
    if k == 10: return "[" * rng.randrange(1000, 50_000) + good
    return good   # a correct completion


def megabyte(rng, good):
    k = rng.randrange(4)
    if k == 0: return "".join(rng.choice(UNI) for _ in range(1000)) * 1000
    if k == 1: return good.replace("<think>", "<think>" + "a b " * 250_000, 1) if "<think>" in good else good + "x" * 1_000_000
    if k == 2: return "<think>" * 150_000
    return good.replace("Step1.", "Step1." + "word " * 200_000, 1).replace("1: ", "1: " + "n" * 1_000_000, 1)


def fuzz_cases():
    cases = {"decomposition": [DEC, {"steps": ["Find the file"], "reply": "Found."}],
             "tool_planning": [TP, {"tools": []}],
             "orchestration": [WF, {"nodes": ["one", "two", "three", "four"], "edges": [[0, 1], [0, 2], [1, 3], [2, 3], [3, 4], [4, 5]]}],
             "long_horizon": [LH, REPLY]}
    cases["scheduling"] = [s.gold for s in scheduling_samples_cache()]
    return cases


def target(task, g, rng):
    if task == "scheduling":
        return next(s.target for s in scheduling_samples_cache() if s.gold == g)
    extra = {"think": "I will plan this."} if task in ("tool_planning", "long_horizon") else {}
    return render(task, g | extra)


class HashWord:
    "Cheap embedder for the bulk of the fuzzing: a first-word direction plus per-text noise (cosines of any sign)."
    def encode(self, texts, **kw):
        out = np.zeros((len(texts), 32), np.float32)
        for i, t in enumerate(texts):
            g = np.random.default_rng(zlib.crc32(t.encode("utf-8")))
            out[i] = g.normal(size=32)
            out[i, zlib.crc32((t.split() or [""])[0].encode("utf-8")) % 32] += 6
        return out


FUZZ_TASKS = list(STATIC_TASKS)


@pytest.fixture(scope="module")
def shared_reward():
    return R.UnifiedReward(tasks=FUZZ_TASKS, embedder=Embedder(HashWord()))


@pytest.fixture(scope="module")
def minilm_reward():
    return R.UnifiedReward(tasks=FUZZ_TASKS)


_SCH = []
def scheduling_samples_cache():
    if not _SCH: _SCH.extend(scheduling_samples())
    return _SCH


def run_fuzz(task, reward, n, batch=500):
    rng = random.Random(f"fuzz-{task}-{n}")
    golds = fuzz_cases()[task]
    goods = [target(task, g, rng) for g in golds]
    shared_reward = reward
    seen = valid = partial = 0
    for start in range(0, n, batch):
        idx = [rng.randrange(len(golds)) for _ in range(batch)]
        texts = [megabyte(rng, goods[i]) if (start + j) % 1000 == 7 else mutate(rng, goods[i]) for j, i in enumerate(idx)]
        out = shared_reward.breakdowns(texts, [task] * batch, [golds[i] for i in idx])
        for b in out:
            assert b["format"] in (0.0, 1.0) and 0.0 <= b["content"] <= 1.0 and math.isfinite(b["total"])
            assert b["total"] == pytest.approx(b["format"] + b["content"])
            assert b["content"] == 0.0 or b["format"] == 1.0
        seen += len(out)
        valid += sum(b["format"] for b in out); partial += sum(0 < b["content"] for b in out)
    assert seen == n
    assert 0.05 * n < valid < 0.95 * n and partial > 0.02 * n, (valid, partial)   # both paths exercised
    raised = {k: v for k, v in shared_reward.stats.items() if k.endswith("_raised")}
    assert not raised, raised                                   # no parser or checker raised
    assert shared_reward.stats[f"{task}/unreadable"] >= n - valid  # every unreadable completion counted


@pytest.mark.parametrize("task", list(STATIC_TASKS))
def test_fuzz_never_raises_values_in_range(task, shared_reward):
    "10,000 adversarial completions per task (a cheap embedder stands in for MiniLM)."
    run_fuzz(task, shared_reward, 10_000)


@pytest.mark.parametrize("task", ["decomposition", "orchestration", "long_horizon"])
def test_fuzz_with_minilm(task, minilm_reward):
    "The same adversarial completions through the real embedding model (unicode, lone surrogates, 1 MB texts)."
    run_fuzz(task, minilm_reward, 1_000)


# ---------------------------------------------------------------- TRL GRPOTrainer, two steps
def test_grpo_trainer_two_steps(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    try:
        from magicagent.models import build_tiny_random
        model, tok = build_tiny_random(seed=0)
    except ImportError:
        pytest.skip("magicagent.models.build_tiny_random is not available")
    msg = lambda q, a: [{"role": "system", "content": "You are a planner."}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    samples = [Sample(id="decomposition-x-000000", task="decomposition", messages=msg("Book a flight.", render("decomposition", DEC)), gold=DEC),
               Sample(id="tool_planning-x-000000", task="tool_planning", messages=msg("Find a hotel.", render("tool_planning", TP | {"think": "t"})), gold=TP, scenario="dependency"),
               Sample(id="orchestration-x-000000", task="orchestration", messages=msg("Read the file.", render("orchestration", WF)), gold=WF),
               Sample(id="long_horizon-x-000000", task="long_horizon", messages=msg("Weather?", render("long_horizon", LH | {"think": "t"})), gold=LH, scenario="condition")]
    samples += scheduling_samples_cache()[:1]
    calls = []
    reward_fn = R.UnifiedReward(tasks=sorted({s.task for s in samples}))
    def unified(completions, **kw):
        calls.append(sorted(set(kw["task"])))
        return reward_fn(completions, **kw)
    ds = Dataset.from_list(R.grpo_rows(samples) * 2)
    cfg = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=2,
                     max_completion_length=8, learning_rate=1e-5, logging_steps=1, report_to=[], save_strategy="no",
                     use_cpu=True, bf16=False, seed=0, beta=0.04, dataloader_num_workers=0)
    # with beta > 0 TRL rebuilds the reference policy from the model's path, so the tiny model is saved first
    model.save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    trainer = GRPOTrainer(model=str(tmp_path / "tiny"), processing_class=tok, reward_funcs=[unified], args=cfg, train_dataset=ds)
    trainer.train()
    assert trainer.state.global_step == 2 and len(calls) >= 2
    assert len({t for c in calls for t in c}) >= 2          # batches mixed several tasks
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert logs and all(0.0 <= h["reward"] <= 2.0 for h in logs)
    assert any(k.startswith("reward/") and "/format" in k for h in trainer.state.log_history for k in h)
