"The benchmark harness: end to end with a real (tiny) model on fixture files of every format, resumption after a real kill, the CLI."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from magicagent.bench import harness
from magicagent.bench.harness import run_benchmark, bench_main, table2_rows
from magicagent.cli import parse

FIX = Path(__file__).parent / "fixtures" / "bench"

class Scripted:
    "A generator answering from a table (item's user text → answer), counting what it is asked."
    def __init__(self, answers, default=""): self.answers, self.default, self.asked = answers, default, 0
    def prompt_lengths(self, convs): return [len(json.dumps(c)) // 4 for c in convs]
    def generate(self, convs, n=1, **kw):
        self.asked += len(convs)
        return [[next((a for k, a in self.answers.items() if k in c[-1]["content"]), self.default)] for c in convs]

def test_bfcl_end_to_end_with_a_real_tiny_model(tmp_path):
    res = run_benchmark("bfcl", "tiny-random", tmp_path, data=FIX / "bfcl", categories=["simple", "irrelevance", "live_relevance"],
                        max_new_tokens=8, batch_size=2, progress=False)
    assert res["n"] == 5 and res["reused_generations"] == 0
    out = json.loads((tmp_path / "bfcl.json").read_text())
    assert [i["id"] for i in out["items"]] == ["simple_0", "simple_1", "simple_363", "irrelevance_0", "live_relevance_0-0-0"]
    assert all(isinstance(i["completion"], str) and isinstance(i["valid"], bool) for i in out["items"])
    again = run_benchmark("bfcl", "tiny-random", tmp_path, data=FIX / "bfcl", categories=["simple", "irrelevance", "live_relevance"],
                          max_new_tokens=8, batch_size=2, progress=False, generator=Scripted({}))
    assert again["reused_generations"] == 5 and [i["completion"] for i in again["items"]] == [i["completion"] for i in out["items"]]
    rows = table2_rows(again, "tiny")
    assert {"benchmark", "category", "model", "metric", "value", "n"} <= set(rows[0]) and any(r["metric"] == "live" for r in rows)

_KILLED = r'''
import sys, time
from magicagent.bench.harness import run_benchmark
from magicagent.models import get_generator
g = get_generator("tiny-random", batch_size=1)
orig = g.generate
def slow(*a, **k):
    out = orig(*a, **k); sys.stdout.write("batch\n"); sys.stdout.flush(); time.sleep(1.5); return out
g.generate = slow
run_benchmark("bfcl", "tiny-random", sys.argv[1], data=sys.argv[2], max_new_tokens=6, batch_size=1, generator=g, progress=False,
              categories=["simple", "parallel", "multiple", "irrelevance", "live_relevance"])
'''

def test_a_killed_run_resumes_without_regenerating(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path), str(FIX / "bfcl")], stdout=subprocess.PIPE, text=True)
    cache = tmp_path / "bfcl.generations.jsonl"
    for _ in range(3): assert p.stdout.readline() == "batch\n"     # three batches generated (two of them kept)...
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL); p.wait()                       # ...then killed mid-run
    kept = [json.loads(l) for l in cache.read_text().splitlines()[1:]]
    assert 2 <= len(kept) < 7 and not (tmp_path / "bfcl.json").exists()
    g = Scripted({}, default="[]")
    res = run_benchmark("bfcl", "tiny-random", tmp_path, data=FIX / "bfcl", max_new_tokens=6, batch_size=1, generator=g, progress=False,
                        categories=["simple", "parallel", "multiple", "irrelevance", "live_relevance"])
    assert res["reused_generations"] == len(kept) and g.asked == 7 - len(kept)
    assert {i["id"]: i["completion"] for i in res["items"] if i["id"] in {k["id"] for k in kept}} == {k["id"]: k["completion"] for k in kept}

def test_a_changed_setting_does_not_reuse(tmp_path):
    run_benchmark("bfcl", "m", tmp_path, data=FIX / "bfcl", categories=["simple"], generator=Scripted({}, "[]"), progress=False)
    g = Scripted({}, "[]")
    assert run_benchmark("bfcl", "m", tmp_path, data=FIX / "bfcl", categories=["simple"], max_new_tokens=9, generator=g, progress=False)["reused_generations"] == 0
    assert g.asked == 3

def test_acebench_fixture_set(tmp_path):
    g = Scripted({"XR10": "[AutomationSystemCompatibilityCheck(systemID=2435, newDeviceModel='XR10')]",
                  "Treaty": "Missing necessary parameters (time_period) for the api (analyze_diplomatic_impact)",
                  "cake": "That is beyond the limitations of the function."}, default="[]")
    res = run_benchmark("acebench", "m", tmp_path, data=FIX / "acebench" / "data_all", generator=g, progress=False)
    bc = res["by_category"]
    assert bc["normal_atom_number"]["accuracy"] == 1.0 and bc["special_incomplete"]["accuracy"] == 1.0
    assert bc["special_irrelevant"]["accuracy"] == 1.0 and bc["normal_atom_list"]["accuracy"] == 0.0
    assert res["summary"]["special"] == round(2 / 3, 3)

def test_worfbench_fixture_set(tmp_path):
    gold = [json.loads((FIX / "worfbench/gold_traj/os/graph_eval.json").read_text())[i]["conversations"][-1]["content"] for i in (0, 1)]
    g = Scripted({"notes.txt": gold[0], "trip": "no workflow here"})
    res = run_benchmark("worfbench", "m", tmp_path, data=FIX / "worfbench", generator=g, progress=False)
    assert res["items"][0]["chain_f1"] == pytest.approx(1.0) and res["items"][0]["graph_f1"] == pytest.approx(1.0)
    assert res["items"][1]["chain_f1"] == 0.0 and res["summary"]["chain_f1"] == pytest.approx(0.5)
    assert res["items"][0]["completion"] == gold[0]

def test_naturalplan_fixture_set(tmp_path):
    data = {t: json.loads((FIX / f"naturalplan/data/{f}").read_text()) for t, f in
            [("trip", "trip_planning.json"), ("meeting", "meeting_planning.json"), ("calendar", "calendar_scheduling.json")]}
    g = Scripted({"Vienna": next(iter(data["trip"].values()))["pred_5shot_pro"], "Betty": next(iter(data["meeting"].values()))["pred_5shot_pro"],
                  "Ann and Bob": "Here is the proposed time: Monday, 9:00 - 9:30"})
    res = run_benchmark("naturalplan", "m", tmp_path, data=FIX / "naturalplan", generator=g, progress=False)
    assert {c: v["accuracy"] for c, v in res["by_category"].items()} == {"trip": 1.0, "meeting": 1.0, "calendar": 0.0}
    assert res["items"][0]["messages" if False else "category"] == "trip"

def test_tau2_and_alfworld_formats():
    from magicagent.bench.tau2 import read_tau2_results, tau2_command
    r = read_tau2_results(FIX / "tau2" / "retail_results.json")
    assert r["domain"] == "retail" and r["pass_hat_1"] == 0.5 and r["n_tasks"] == 2
    assert read_tau2_results(FIX / "tau2" / "retail_results.json", k=2)["pass_hat_2"] == 0.0
    cmd = tau2_command("airline", "smollm2-135m", "http://127.0.0.1:8000/v1", "gpt-4.1", "x")
    assert cmd[:4] == ["tau2", "run", "--domain", "airline"] and "openai/smollm2-135m" in cmd

def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data"): run_benchmark("acebench", "m", tmp_path, generator=Scripted({}))
    with pytest.raises(FileNotFoundError, match="graph_eval.json"): run_benchmark("worfbench", "m", tmp_path, data=tmp_path, generator=Scripted({}))
    with pytest.raises(ValueError, match="tau2 runs its own loop"): run_benchmark("tau2", "m", tmp_path)

def test_cli(tmp_path, capsys):
    assert parse("bench", ["--benchmark", "bfcl", "--model", "m"]).limit is None
    assert bench_main(["--benchmark", "acebench", "--model", "m", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert bench_main(["--benchmark", "bfcl", "--model", "tiny-random", "--data", str(FIX / "bfcl"), "--categories", "simple",
                       "--limit", "1", "--max-new-tokens", "4", "--out", str(tmp_path), "--no-progress"]) == 0
    assert json.loads((tmp_path / "bfcl.json").read_text())["n"] == 1
    assert bench_main(["--benchmark", "nope", "--model", "m"]) == 2

def test_episode_loop_on_a_real_textworld_game(tmp_path):
    pytest.importorskip("textworld")
    from magicagent.envs import make_game, TextWorldEnv
    from magicagent.bench.alfworld import run_episodes, alfworld_env
    env = TextWorldEnv([make_game("cooking", {"recipe": 1, "take": 1, "go": 1}, 5, tmp_path / "g.z8")])
    env.reset(0); walk = env.walkthrough()
    class Script:
        def __init__(self, cmds): self.cmds = list(cmds)
        def generate(self, convs, **kw): return [[f"<think>go</think><action>{self.cmds.pop(0) if self.cmds else 'look'}</action>"]]
    assert run_episodes(Script(walk), env, 1, max_steps=len(walk) + 2)["success_rate"] == 1.0
    r = run_episodes(Script(["dance wildly", "dance wildly"]), env, 1, max_steps=2)
    assert r["success_rate"] == 0.0 and r["episodes"][0]["invalid"] == 2
    env.close()
    with pytest.raises(FileNotFoundError, match="alfworld-download"): alfworld_env(str(tmp_path / "none"))
