"""Scheduling synthesis: 5,000 samples per subtask checked by an independent checker and an independent
solution counter, NaturalPlan read-back by the official parsing rules, determinism across workers, the CLI,
and `verify_schedule` fuzzing. The checkers here re-implement the rules from the instance alone; they do
not call the generator's solvers or `verify_schedule`."""
import datetime, itertools, json, os, re, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from magicagent.core import read_jsonl, GoldError
from magicagent.formats import parse_scheduling
from magicagent.synth.base import iter_samples
from magicagent.synth import scheduling as S
from magicagent.synth import schedule_verifier as V

N = 5000

# ---------------------------------------------------------------- independent checkers
def _m(t):  # "13:30" -> minutes
    h, m = t.split(":"); return int(h) * 60 + int(m)

def _t12(t):  # "9:22AM" -> datetime, NaturalPlan's way
    return datetime.datetime.strptime(t, "%I:%M%p")

def trip_violations(inst, plan):
    "Every constraint of a trip instance, checked on a plan [{city, first, last}]."
    v, flights = [], {frozenset(f) for f in inst["flights"]}
    if [p["city"] for p in plan] and sorted(p["city"] for p in plan) != sorted(inst["cities"]): v.append("cities")
    if plan[0]["first"] != 1 or plan[-1]["last"] != inst["num_days"]: v.append("span")
    for i, p in enumerate(plan):
        if p["last"] - p["first"] + 1 != inst["stays"][p["city"]]: v.append("stay")
        if i and p["first"] != plan[i - 1]["last"]: v.append("flight day")
        if i and frozenset((plan[i - 1]["city"], p["city"])) not in flights: v.append("flight")
        days = set(range(p["first"], p["last"] + 1))
        for w in inst["windows"]:
            if w["city"] != p["city"]: continue
            want = set(range(w["first"], w["last"] + 1))
            if w["kind"] == "attend" and not want <= days: v.append("attend")
            if w["kind"] == "meet" and not want & days: v.append("meet")
    assert sum(inst["stays"].values()) - (len(inst["cities"]) - 1) == inst["num_days"]
    return v

def trip_count(inst):
    "Number of visiting orders satisfying every constraint: forward DP over (visited set, last city)."
    cities = inst["cities"]; n = len(cities); idx = {c: i for i, c in enumerate(cities)}
    adj = [[False] * n for _ in range(n)]
    for a, b in inst["flights"]: adj[idx[a]][idx[b]] = adj[idx[b]][idx[a]] = True
    def ok(c, first):
        last = first + inst["stays"][cities[c]] - 1
        for w in inst["windows"]:
            if w["city"] != cities[c]: continue
            if w["kind"] == "attend" and not (first <= w["first"] and w["last"] <= last): return False
            if w["kind"] == "meet" and not (first <= w["last"] and w["first"] <= last): return False
        return True
    layer = {(1 << c, c): 1 for c in range(n) if ok(c, 1)}
    for _ in range(n - 1):
        nxt = {}
        for (mask, last), cnt in layer.items():
            first = 1 + sum(inst["stays"][cities[c]] - 1 for c in range(n) if mask >> c & 1)
            for c in range(n):
                if not mask >> c & 1 and adj[last][c] and ok(c, first):
                    k = (mask | 1 << c, c); nxt[k] = nxt.get(k, 0) + cnt
        layer = nxt
    return sum(layer.values())

def meeting_people(inst):
    out = {}
    for name, loc, times, mins in inst["constraints"][1:]:
        a, b = times.split(" to ")
        out[name] = (loc, _t12(a), _t12(b), mins)
    return out

def meeting_violations(inst, sol):
    "Replays the stored meetings against the instance: travel, windows, minimum lengths, no repeats."
    v, people = [], meeting_people(inst)
    loc, now = inst["constraints"][0][0], _t12(inst["constraints"][0][1])
    seen = set()
    for m in sol["meetings"]:
        ploc, a, b, mins = people[m["person"]]
        if m["person"] in seen: v.append("repeat")
        seen.add(m["person"])
        if m["location"] != ploc: v.append("location")
        if ploc != loc: now += datetime.timedelta(minutes=inst["dist_matrix"][loc][ploc]); loc = ploc
        start, end = _t12(m["start"]), _t12(m["end"])
        if start < now or start < a or end > b: v.append("window")
        if end - start != datetime.timedelta(minutes=mins): v.append("length")
        now = end
    if len(sol["meetings"]) != sol["num_met"]: v.append("count")
    return v

def meeting_best(inst):
    "(most friends, earliest finish, number of orders reaching both): forward search merging equal states."
    people = meeting_people(inst); names = sorted(people)
    start = (inst["constraints"][0][0], _t12(inst["constraints"][0][1]))
    layer = {(frozenset(), start[0], start[1]): 1}
    best = (0, start[1], 1)
    while layer:
        nxt = {}
        for (met, loc, now), cnt in layer.items():
            for p in names:
                if p in met: continue
                ploc, a, b, mins = people[p]
                t = now if ploc == loc else now + datetime.timedelta(minutes=inst["dist_matrix"][loc][ploc])
                t = max(t, a); end = t + datetime.timedelta(minutes=mins)
                if end <= b:
                    k = (met | {p}, ploc, end); nxt[k] = nxt.get(k, 0) + cnt
        if nxt:
            k = len(next(iter(nxt))[0]); fin = min(s[2] for s in nxt)
            best = (k, fin, sum(c for s, c in nxt.items() if s[2] == fin))
        layer = nxt
    return best

def calendar_ok(inst, day, start, end):
    w0, w1 = (_m(x) for x in inst["work_hours"])
    if day not in inst["days"] or start < w0 or end > w1 or end - start != inst["duration_minutes"]: return False
    for p in inst["participants"]:
        for a, b in inst["busy"].get(p, {}).get(day, []):
            if _m(a) < end and start < _m(b): return False
    for pr in inst["preferences"]:
        if pr["day"] != day: continue
        if pr["kind"] == "avoid_day" or (pr["kind"] == "not_before" and start < _m(pr["time"])) or (pr["kind"] == "not_after" and end > _m(pr["time"])): return False
    return True

def calendar_count(inst):
    d = inst["duration_minutes"]
    return sum(calendar_ok(inst, day, s, s + d) for day in inst["days"] for s in range(0, 24 * 60 - d + 1, 30))

# ---------------------------------------------------------------- NaturalPlan's official parsing (SCORING.md), re-implemented
def np_trip_parse(text):
    days, flights, total = [], [], None
    for piece in text.split("\n"):
        m = re.findall(r"European cities for (\d+) days", piece)
        if m: total = int(m[0])
        vm = re.findall(r"\d+-\d+", piece)
        if vm:
            days.append(vm[0])
            if int(vm[0].split("-")[1]) == total: break
        flights += re.findall(r".*Day (\d+).*from (\w+) to (\w+)", piece)
    if not days or not flights: return []
    cities = [flights[0][1]] + [f[2] for f in flights]
    fdays = [1] + [int(f[0]) for f in flights] + [int(days[-1].split("-")[1])]
    return [(c, fdays[i + 1] - fdays[i] + 1) for i, c in enumerate(cities)]

def np_meeting_steps(text):
    if "SOLUTION:" in text: text = text[text.find("SOLUTION:") + len("SOLUTION:"):]
    return [x.strip() for x in text.split(".") if x.strip()]

def np_meeting_replay(steps, inst):
    people = meeting_people(inst); dist = inst["dist_matrix"]
    loc, now = inst["constraints"][0][0], _t12(inst["constraints"][0][1])
    met, score = set(), 0
    for step in steps:
        try:
            if step.startswith("You start"): continue
            elif step.startswith("You travel"):
                dest = step.split("travel to ")[1].split(" in")[0].strip()
                now += datetime.timedelta(minutes=dist[loc][dest]); loc = dest
            elif step.startswith("You wait"):
                t = _t12(step.split("wait until ")[1].split(".")[0].strip())
                if t <= now: raise ValueError
                now = t
            elif step.startswith("You meet"):
                p = step.split("meet ")[1].split(" for")[0].strip()
                if p in met: raise ValueError
                met.add(p); ploc, a, b, mins = people[p]
                end = now + datetime.timedelta(minutes=mins)
                if loc != ploc or now < a or end > b: raise ValueError
                now = end; score += 1
            else: raise ValueError
        except Exception: break
    return score

def np_calendar_parse(text):
    m = re.findall(r"[A-Za-z]+, [0-9]+:[0-9]+ - [0-9]+:[0-9]+", text)
    if not m: return None
    day, hours = m[0].split(",")[0].strip(), m[0].split(",")[1].strip()
    h = lambda x: float(x.split(":")[0]) + (0.5 if x.split(":")[1] == "30" else 0.0)
    return day, h(hours.split("-")[0].strip()), h(hours.split("-")[1].strip())

def _hour(t): return float(t.split(":")[0]) + (0.5 if t.split(":")[1] == "30" else 0.0)

# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=S.SUBTASKS)
def big(request):
    sub = request.param
    m = {}
    xs = list(iter_samples("scheduling", N, seed=101, subtask=sub, progress=False, manifest=m))
    return sub, xs, m

def test_5000_samples_verified_independently(big):
    sub, xs, m = big
    assert len(xs) == N, m
    assert len({x.id for x in xs}) == N
    levels = set()
    for x in xs:
        g, inst, sol = x.gold, x.gold["instance"], x.gold["solution"]
        assert x.task == "scheduling" and x.subtask == sub == g["subtask"]
        assert x.meta["checks"].get("solutions", x.meta["checks"].get("optima")) == 1
        levels.add(x.meta["difficulty"])
        if sub == "trip":
            assert trip_violations(inst, sol["plan"]) == [], x.id
            assert trip_count(inst) == 1, x.id
        elif sub == "meeting":
            assert meeting_violations(inst, sol) == [], x.id
            k, fin, count = meeting_best(inst)
            assert (k, count) == (sol["num_met"], 1), x.id
            assert fin == _t12(sol["finish"]) == _t12(sol["meetings"][-1]["end"]), x.id
        else:
            assert calendar_ok(inst, sol["day"], _m(sol["start"]), _m(sol["end"])), x.id
            assert calendar_count(inst) == 1, x.id
    assert levels == set(S.LEVELS)
    print(sub, m["stages"], m["rejected"])

def test_naturalplan_readback(big):
    "The golden answer (and the whole target) is read back by NaturalPlan's official rules into the stored solution."
    sub, xs, _ = big
    for x in xs:
        ans, sol, inst = parse_scheduling(x.target)["answer"], x.gold["solution"], x.gold["instance"]
        for text in (ans, x.target):
            if sub == "trip":
                assert np_trip_parse(text) == [(p["city"], p["last"] - p["first"] + 1) for p in sol["plan"]], x.id
            elif sub == "meeting":
                assert np_meeting_replay(np_meeting_steps(text), inst) == sol["num_met"], x.id
                assert np_meeting_replay(sol["plan"], inst) == sol["num_met"], x.id
            else:
                assert np_calendar_parse(text) == (sol["day"], _hour(sol["start"]), _hour(sol["end"])), x.id

def test_naturalplan_readback_with_package_scorers(big):
    "The same read-back through `magicagent.rewards`' official scorers, where that module is installed."
    import magicagent.scorers.naturalplan as rw
    sub, xs, _ = big
    for x in xs[:2000]:
        ans, sol, inst = parse_scheduling(x.target)["answer"], x.gold["solution"], x.gold["instance"]
        if sub == "trip":
            assert rw.naturalplan_trip_parse(ans) == [(p["city"], p["last"] - p["first"] + 1) for p in sol["plan"]]
        elif sub == "meeting":
            assert rw.meeting_replay(rw.naturalplan_meeting_parse(ans), inst["constraints"], inst["dist_matrix"]) == sol["num_met"]
        else:
            assert rw.naturalplan_calendar_parse(ans) == (sol["day"], _hour(sol["start"]), _hour(sol["end"]))

def test_verify_schedule_accepts_gold_rejects_others(big):
    "The stored answer passes `verify_schedule`; for unique instances every other plan fails it."
    sub, xs, _ = big
    for x in xs[:300]:
        g, inst, sol = x.gold, x.gold["instance"], x.gold["solution"]
        assert S.verify_schedule(g, x.target) == []
        if sub == "trip" and len(inst["cities"]) <= 6:
            gold = [p["city"] for p in sol["plan"]]
            for order in itertools.permutations(inst["cities"]):
                v = S.verify_schedule(g, S.trip_answer(inst, {"plan": V.trip_plan(inst, list(order))}))
                assert (v == []) == (list(order) == gold), (x.id, order, v)
        elif sub == "calendar":
            d = inst["duration_minutes"]
            for day in inst["days"]:
                for s in range(9 * 60, 17 * 60 - d + 1, 30):
                    v = S.verify_schedule(g, f"Here is the proposed time: {day}, {V.fmt24(s)} - {V.fmt24(s + d)}")
                    assert (v == []) == ((day, V.fmt24(s)) == (sol["day"], sol["start"])), (x.id, day, s, v)
        elif sub == "meeting" and sol["num_met"] >= 1:
            short = "SOLUTION: " + " ".join(s + "." for s in sol["plan"][:-1])
            assert S.verify_schedule(g, short), x.id

import functools
@functools.lru_cache(maxsize=None)
def _few(seed, n=30): return tuple(iter_samples("scheduling", n, seed=seed, progress=False))

_PIECES = ["Day 1-3", "**Day 3:** Fly from Rome to Paris.", "SOLUTION:", "You travel to Bayview in 5 minutes",
           "You meet Barbara for 30 minutes", "You wait until 9:00AM", "You wait until 13:00PM", "Monday, 9:00 - 9:30",
           "Monday, 99:99 pm - 0:00 am", "Day 1-3 \u212araków ſtockholm", "<answer>", "</answer>", "\n", "."]

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=40), st.sampled_from(_PIECES)), max_size=12), st.sampled_from(range(30)))
def test_verify_schedule_never_raises(parts, k):
    text = " ".join(parts)
    x = _few(5)[k]
    out = S.verify_schedule(x.gold, text)
    assert isinstance(out, list) and all(isinstance(v, str) for v in out)
    assert not any("could not be read" in v for v in out), out           # read as a violation, not by the safety net
    out2 = S.verify_schedule(x.gold, "<answer>" + text)
    assert isinstance(out2, list)

@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(30)), st.integers(0, 10))
def test_verify_schedule_tolerates_mutations(k, cut):
    "Truncated or reformatted golden answers never crash the reader; a lower-case answer still verifies."
    x = _few(9)[k]
    ans = parse_scheduling(x.target)["answer"]
    assert isinstance(S.verify_schedule(x.gold, ans[: len(ans) * cut // 10]), list)
    assert S.verify_schedule(x.gold, ans.lower()) == []

def test_bad_gold_and_bad_input():
    with pytest.raises(GoldError, match="scheduling gold"): S.verify_schedule({}, "x")
    with pytest.raises(GoldError, match="instance.num_days"): S.verify_schedule({"subtask": "trip", "instance": {}}, "Day 1-2 Paris")
    with pytest.raises(GoldError, match="scheduling gold must be an object"): S.verify_schedule(None, "x")
    x = S.make_sample(2, 0)
    assert S.verify_schedule(x.gold, None)[0].startswith("unparseable")
    with pytest.raises(ValueError, match="num_people"): S.make_sample(2, 0, subtask="calendar", num_people=0)
    with pytest.raises(ValueError, match="difficulty"): S.make_sample(2, 0, difficulty=9)

def _paths(x, path=()):
    "Every (path) to a value inside a JSON-like object."
    yield path
    if isinstance(x, dict):
        for k, v in x.items(): yield from _paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from _paths(v, path + (i,))

_JUNK = [None, "", "x", -1, 0, 1.5, True, [], {}, ["a"], {"a": 1}, "25:61", "13:00PM"]

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(30)), st.data())
def test_broken_gold_is_a_gold_error_never_another_exception(k, data):
    "Any one field of a real gold deleted or replaced: verify_schedule raises GoldError or returns violations, nothing else."
    x = _few(5)[k]
    gold = json.loads(json.dumps(x.gold))
    path = data.draw(st.sampled_from([p for p in _paths(gold) if p]))
    parent = gold
    for key in path[:-1]: parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict): del parent[path[-1]]
    else: parent[path[-1]] = data.draw(st.sampled_from(_JUNK))
    try: out = S.verify_schedule(gold, x.target)
    except GoldError: return
    assert isinstance(out, list) and not any("could not be read" in v for v in out), out

def test_mixed_subtasks_cycle_with_index():
    xs = [S.make_sample(i, 3) for i in range(6) if True]
    assert [x.subtask for x in xs] == ["trip", "meeting", "calendar"] * 2

def _run_cli(args, cwd, hashseed="0"):
    env = dict(os.environ, PYTHONHASHSEED=hashseed)  # output must not depend on string hashing either
    return subprocess.run([sys.executable, "-m", "magicagent.pipeline", "synth", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)

def test_cli_deterministic_across_workers(tmp_path):
    outs = []
    for w in (1, 2):
        r = _run_cli(["--task", "scheduling", "--n", "150", "--seed", "7", "--out", str(tmp_path / f"w{w}"), "--workers", str(w), "--no-progress"], tmp_path, hashseed=str(w * 17))
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append((tmp_path / f"w{w}" / "scheduling.jsonl").read_bytes())
    assert outs[0] == outs[1]
    recs = list(read_jsonl(tmp_path / "w1" / "scheduling.jsonl", as_sample=True))
    assert len(recs) == 150 and {r.subtask for r in recs} == set(S.SUBTASKS)
    man = json.loads((tmp_path / "w1" / "manifest.json").read_text())["scheduling"]
    assert man["accepted"] == 150 and man["stages"]["candidates"] == 150 + sum(man["rejected"].values())

def test_cli_subtask_and_difficulty(tmp_path):
    r = _run_cli(["--task", "scheduling", "--subtask", "meeting", "--difficulty", "3", "--n", "12", "--seed", "1", "--out", str(tmp_path), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = list(read_jsonl(tmp_path / "scheduling-meeting.jsonl", as_sample=True))          # a subtask has a file of its own
    assert {x.subtask for x in recs} == {"meeting"} and {x.meta["difficulty"] for x in recs} == {3}
    assert all(len(x.gold["instance"]["constraints"]) == 5 for x in recs)
    again = _run_cli(["--task", "scheduling", "--subtask", "meeting", "--difficulty", "3", "--n", "12", "--seed", "1", "--out", str(tmp_path / "b"), "--no-progress"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "b" / "scheduling-meeting.jsonl").read_bytes() == (tmp_path / "scheduling-meeting.jsonl").read_bytes()

def test_explicit_knobs():
    x = S.make_sample(0, 0, subtask="trip", num_cities=6, num_days=20)
    assert len(x.gold["instance"]["cities"]) == 6 and x.gold["instance"]["num_days"] == 20
    y = S.make_sample(0, 0, subtask="calendar", num_people=5, num_days=2, duration_minutes=90)
    inst = y.gold["instance"]
    assert len(inst["participants"]) == 5 and len(inst["days"]) == 2 and inst["duration_minutes"] == 90 and calendar_count(inst) == 1

def test_unsatisfiable_instance_rejected():
    inst = {"num_days": 7, "cities": ["Rome", "Paris", "Oslo"], "stays": {"Rome": 3, "Paris": 2, "Oslo": 4},
            "flights": [["Rome", "Paris"], ["Paris", "Oslo"]],
            "windows": [{"city": "Oslo", "kind": "attend", "first": 1, "last": 2}, {"city": "Oslo", "kind": "meet", "first": 6, "last": 7}]}
    assert V.trip_solutions(inst) == [] and trip_count(inst) == 0

def test_shipped_entities_checked(tmp_path):
    import shutil
    src = Path(S.__file__).parent.parent / "data" / "scheduling"
    for f in src.iterdir(): shutil.copy(f, tmp_path)
    d = json.loads((tmp_path / "city_map.json").read_text()); d["districts"].append("St. Mark Square")
    (tmp_path / "city_map.json").write_text(json.dumps(d))
    with pytest.raises(S.EntityError, match="St. Mark Square"): S.load_entities(str(tmp_path))

def test_tolerant_reading_of_free_text():
    "Paraphrased golden answers still verify: 12-hour calendar times, 'Days a-b', loose meeting sentences."
    xs = _few(9)
    cal = next(x for x in xs if x.subtask == "calendar"); sol = cal.gold["solution"]
    s, e = _m(sol["start"]), _m(sol["end"])
    f = lambda m: f"{(m // 60 - 1) % 12 + 1}:{m % 60:02d}{'pm' if m >= 720 else 'am'}"
    assert S.verify_schedule(cal.gold, f"I propose {sol['day'].lower()} {f(s)} to {f(e)}.") == []
    assert S.verify_schedule(cal.gold, f"I propose {sol['day']}, {f(s + 30)} - {f(e + 30)}") != []
    trip = next(x for x in xs if x.subtask == "trip")
    text = "\n".join(f"Days {p['first']}-{p['last']}: stay in {p['city']}" for p in trip.gold["solution"]["plan"])
    assert S.verify_schedule(trip.gold, text) == []
    bad = "\n".join(f"Days {p['first']}-{p['last']}: stay in {p['city']}" for p in trip.gold["solution"]["plan"][::-1])
    assert S.verify_schedule(trip.gold, bad) != []
    meet = next(x for x in xs if x.subtask == "meeting")
    loose = S.meeting_answer(meet.gold["instance"], meet.gold["solution"]).replace(" in ", ", which takes ").lower()
    assert S.verify_schedule(meet.gold, loose) == []
