"Table 1 formats: render → parse round-trips under hypothesis; malformed text raises only ParseError, fast."
import json, random, string
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from magicagent.formats import render, parse, ParseError, PARSERS, _STEP, _TAGS

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters="<>\x00")

def _clean_text(s):
    s = s.strip()
    return s

text = st.text(_alphabet, min_size=1, max_size=60).map(str.strip).filter(lambda s: s and not _STEP.search(s))
line = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc"), blacklist_characters="<>"), min_size=1, max_size=40).map(str.strip).filter(bool)
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
json_val = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(_alphabet, max_size=20),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), c, max_size=3), max_leaves=8)

@st.composite
def workflow(draw):
    nodes = draw(st.lists(line, min_size=1, max_size=12))
    n = len(nodes)
    edges = draw(st.lists(st.tuples(st.integers(0, n), st.integers(1, n + 1)), min_size=1, max_size=20))
    return {"nodes": nodes, "edges": [list(e) for e in edges]}

STRATEGIES = {
    "decomposition": st.fixed_dictionaries({"steps": st.lists(text, min_size=1, max_size=8), "reply": st.text(_alphabet, max_size=80).map(str.strip)}),
    "tool_planning": st.fixed_dictionaries({"think": st.text(_alphabet, max_size=80).map(str.strip), "tools": st.lists(ident, max_size=6)}),
    "scheduling": st.fixed_dictionaries({"think": st.text(_alphabet, max_size=80).map(str.strip), "answer": text}),
    "orchestration": workflow(),
    "long_horizon": st.fixed_dictionaries({"think": st.text(_alphabet, max_size=80).map(str.strip), "name": ident,
                                           "arguments": st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), json_val, max_size=4)}),
}

@pytest.mark.parametrize("task", list(STRATEGIES))
def test_roundtrip(task):
    @SETTINGS
    @given(STRATEGIES[task])
    def check(ans):
        assert parse(task, render(task, ans)) == ans
    check()

@pytest.mark.parametrize("task", list(STRATEGIES))
def test_roundtrip_with_whitespace_noise(task):
    "Models add newlines and spaces between and inside tags; parsing tolerates them."
    @settings(max_examples=200, deadline=None)
    @given(STRATEGIES[task], st.sampled_from(["\n", " ", "\n\n", "\t "]))
    def check(ans, ws):
        txt = render(task, ans)
        for tg in _TAGS: txt = txt.replace(tg, ws + tg + ws)
        assert parse(task, ws + txt + ws) == ans
    check()

def _malformed(rng, good):
    ops = [lambda s: s[: rng.randrange(len(s) + 1)],                        # truncated
           lambda s: s.replace(">", "><think>", 1),                          # nested tag
           lambda s: "junk " + s, lambda s: s + " trailing junk",
           lambda s: "".join(rng.choice(string.printable) for _ in range(rng.randrange(200))),
           lambda s: s.replace("</", "<", 1),
           lambda s: s * 3,
           lambda s: "<" * 5000 + s,
           lambda s: s.replace("Step", "Stop"), lambda s: s.replace("Edge", "Edges ("),
           lambda s: s.replace("{", "{{", 1), lambda s: "\u2028".join(s)]
    return rng.choice(ops)(good)

GOOD = {"decomposition": render("decomposition", {"steps": ["find a hotel", "book it"], "reply": "done"}),
        "tool_planning": render("tool_planning", {"think": "t", "tools": ["a", "b"]}),
        "scheduling": render("scheduling", {"think": "t", "answer": "SOLUTION: Day 1-2: Oslo"}),
        "orchestration": render("orchestration", {"nodes": ["a", "b"], "edges": [[0, 1], [1, 2], [2, 3]]}),
        "long_horizon": render("long_horizon", {"think": "t", "name": "f", "arguments": {"x": 1}})}

@pytest.mark.timeout(120)
@pytest.mark.parametrize("task", list(PARSERS))
def test_malformed_raises_only_parse_error(task):
    rng = random.Random(task)
    for _ in range(3000):
        s = _malformed(rng, GOOD[task])
        try: parse(task, s)
        except ParseError: pass

BIG = ["<think>" * 200_000, "<Plan>Step1." + "a" * 1_000_000, "Node:\n" + "1: x\n" * 200_000,
       "Node:\n1: a\nEdge: " + "(1," * 300_000, "<think>x</think><tool_call>" + "[" * 500_000 + "</tool_call>",
       "<think>" + "x" * 10**6 + "</think><action>ToolList:[" + "a," * 200_000 + "</action>",
       "<Plan>" + "Step1. a " * 100_000 + "</Plan><Reply>r</Reply>"]

@pytest.mark.timeout(60)   # a bound, not a benchmark: catastrophic backtracking would take hours
@pytest.mark.parametrize("task", list(PARSERS))
def test_megabyte_inputs_bounded(task):
    for s in BIG:
        try: parse(task, s)
        except ParseError: pass

def test_error_says_what_and_where():
    with pytest.raises(ParseError, match=r"expected <action> at position 17"):
        parse("tool_planning", "<think>x</think> <answer>y</answer>")
    with pytest.raises(ParseError, match=r"expected 'Step2.'"):
        parse("decomposition", "<Plan>Step1.a Step3.b</Plan><Reply>r</Reply>")
    with pytest.raises(ParseError, match="not valid JSON"):
        parse("long_horizon", "<think>x</think><tool_call>{name: f}</tool_call>")
    with pytest.raises(ValueError, match="no Table 1 format"):
        parse("online", "x")
