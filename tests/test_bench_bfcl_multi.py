"BFCL multi-turn through bfcl-eval's own executable back-ends and checker: a ground-truth replay passes, chat fails, results are cached."
import ast, json
import pytest
from magicagent.bench.bfcl_multi import MultiTurnBackend, play_entry, run_bfcl_multi_turn

@pytest.fixture(scope="module")
def backend():
    from magicagent.bench.bfcl import fetch_bfcl_eval
    try: fetch_bfcl_eval()
    except RuntimeError as e: pytest.skip(f"bfcl-eval wheel not reachable: {e}")
    with MultiTurnBackend() as be: yield be

class Replay:
    def __init__(self, gt): self.gt, self.t, self.said = gt, 0, False
    def generate(self, convs, **kw):
        if not self.said: self.said = True; return [["[" + ", ".join(self.gt[self.t]) + "]"]]
        self.said, self.t = False, self.t + 1; return [["Done."]]

class Chat:
    def __init__(self): self.calls = 0
    def generate(self, convs, **kw): self.calls += 1; return [["I would rather not."]]

class Loop:
    "Calls a harmless function forever: the entry is forced to quit after the step limit."
    def generate(self, convs, **kw): return [["[pwd()]"]]

def keyword_only(gt): return all(not ast.parse(c, mode="eval").body.args for turn in gt for c in turn)

def test_replay_passes_and_chat_fails(backend):
    e = next(x for x in backend.load("multi_turn_base") if keyword_only(x["ground_truth"]))
    assert e["turns"][0][0]["role"] == "system" and "[func_name1(" in e["turns"][0][0]["content"]
    assert backend.check(e, play_entry(Replay(e["ground_truth"]), backend, e))["valid"]
    assert not backend.check(e, play_entry(Chat(), backend, e))["valid"]

def test_forced_quit_fails(backend):
    e = backend.load("multi_turn_base")[0]
    res = play_entry(Loop(), backend, e)
    assert len(res) == 1 and len(res[0]) == 21
    assert backend.check(e, res) == {"valid": False, "error": f"force-terminated: 1 of {len(e['ground_truth'])} turns"}

def test_miss_func_offers_the_withheld_function(backend):
    e = backend.load("multi_turn_miss_func")[0]
    t = next(iter(e["holdout"]))
    assert e["turns"][int(t)] == [] and "I have updated some more functions" in e["holdout"][t]

def test_run_is_cached(tmp_path, backend):
    g = Chat()
    r = run_bfcl_multi_turn("m", tmp_path, ["multi_turn_base"], limit=1, generator=g, progress=False)
    assert r["n"] == 1 and r["by_category"]["multi_turn_base"]["accuracy"] == 0.0 and g.calls >= 1
    g2 = Chat()
    r2 = run_bfcl_multi_turn("m", tmp_path, ["multi_turn_base"], limit=1, generator=g2, progress=False)
    assert g2.calls == 0 and r2["items"][0]["answers"] == r["items"][0]["answers"]
    assert json.loads((tmp_path / "bfcl_multi_turn.json").read_text())["ids"] == r["ids"]
    with pytest.raises(ValueError, match="multi-turn category"): backend.load("multi_turn_bogus")
