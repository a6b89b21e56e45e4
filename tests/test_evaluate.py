"Held-out split (disjoint seeds, overlap audit), scoring and the `magicagent evaluate` CLI."
import json, random, subprocess, sys, warnings
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st

from magicagent import evaluate as ev
from magicagent.core import read_jsonl, write_jsonl
from magicagent.synth.base import synthesize, simhash, hamming, iter_samples

TASKS = ("scheduling", "orchestration")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    train, test = d / "synth", d / "synth" / "heldout"
    for t in TASKS: synthesize(t, 12, train, seed=0, progress=False)
    m = ev.make_heldout(test, 6, seed=0, train_dir=train, tasks=TASKS, progress=False)
    return train, test, m


def _recs(d): return [r for f in sorted(Path(d).glob("*.jsonl")) for r in read_jsonl(f, as_sample=True)]


def test_split_is_disjoint_and_complete(split):
    train, test, m = split
    tr, te = _recs(train), _recs(test)
    assert {t: m["tasks"][t]["accepted"] for t in TASKS} == {t: 6 for t in TASKS}
    assert len(te) == 12 and all(s.id.startswith("heldout-") and s.meta["split"] == "heldout" for s in te)
    rep = ev.overlap_report(tr, te)
    assert rep == {"train": 24, "test": 12, "id_overlap": 0, "near_duplicate": 0}
    # brute force, independent of both the index and the vectorised audit
    assert all(hamming(simhash(ev.prompt_text(a)), simhash(ev.prompt_text(b))) > 3 for a in tr for b in te)
    assert m["heldout_seed"] == ev.heldout_seed(0) != 0


def test_split_is_deterministic(split, tmp_path):
    train, test, _ = split
    ev.make_heldout(tmp_path, 6, seed=0, train_dir=train, tasks=TASKS, progress=False)
    for t in TASKS: assert (tmp_path / f"{t}.jsonl").read_bytes() == (test / f"{t}.jsonl").read_bytes()


def test_overlap_with_train_is_rejected_and_counted(split, tmp_path):
    "A training pool that contains a held-out prompt (under another id) makes the split skip and count it."
    train, test, _ = split
    leak = list(read_jsonl(test / "orchestration.jsonl", as_sample=True))[:2]
    for s in leak: s.id = "train-copy-" + s.id
    pool = tmp_path / "pool"; pool.mkdir()
    tr = list(read_jsonl(train / "orchestration.jsonl", as_sample=True))
    impostor = list(read_jsonl(train / "orchestration.jsonl", as_sample=True))[0]
    impostor.id = list(read_jsonl(test / "orchestration.jsonl", as_sample=True))[2].id    # same id, other content
    write_jsonl(pool / "orchestration.jsonl", tr + leak + [impostor])
    m = ev.make_heldout(tmp_path / "out", 6, seed=0, train_dir=pool, tasks=("orchestration",), progress=False)
    assert m["tasks"]["orchestration"]["rejected"] == {"near_duplicate_of_train": 2, "id_overlap": 1}
    got = {s.id for s in read_jsonl(tmp_path / "out" / "orchestration.jsonl", as_sample=True)}
    assert not got & {s.id[len("train-copy-"):] for s in leak} and impostor.id not in got and len(got) == 6
    # the audit flags the same records when they are evaluated against the leaked pool
    assert ev.overlap_report(leak, _recs(test))["near_duplicate"] == 2


def test_same_seed_stream_is_caught():
    a = list(iter_samples("orchestration", 4, seed=3, progress=False))
    r = ev.overlap_report(a, list(iter_samples("orchestration", 4, seed=3, progress=False)))
    assert r["id_overlap"] == 4 and r["near_duplicate"] == 4


def test_unavailable_generator_is_recorded(tmp_path, monkeypatch):
    import magicagent.synth.base as sb
    monkeypatch.setitem(sb.GENERATORS, "scheduling", "magicagent.no_such_module")
    monkeypatch.setattr(ev, "iter_samples", sb.iter_samples)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = ev.make_heldout(tmp_path, 2, tasks=("scheduling",), progress=False)
    assert "unavailable" in m["tasks"]["scheduling"] and any("scheduling" in str(x.message) for x in w)


_words = st.lists(st.sampled_from("plan trip meeting rome paris day one two three book hotel flight".split()), min_size=1, max_size=12)

@settings(max_examples=60, deadline=None)
@given(st.lists(_words.map(" ".join), min_size=1, max_size=15), st.lists(_words.map(" ".join), min_size=1, max_size=15))
def test_index_matches_brute_force(indexed, queries):
    idx = ev.NearDuplicateIndex(3)
    for t in indexed: idx.add(t)
    for q in queries:
        brute = any(hamming(simhash(q), simhash(t)) <= 3 for t in indexed)
        assert idx.near(q) == brute


def test_scores_span_gold_to_empty(split):
    _, test, _ = split
    te = _recs(test)
    gold, empty = ev.summarize(ev.score_completions(te, [s.target for s in te])), ev.summarize(ev.score_completions(te, [""] * len(te)))
    assert all(v["format"] == 1.0 and v["n"] == 6 for v in gold["by_task"].values())
    assert gold["by_task"]["scheduling"]["content"] == 1.0       # the gold schedule satisfies every constraint
    assert empty["overall"]["reward"] == 0.0 and empty["overall"]["n"] == 12
    # the overall mean is the mean of the task means
    assert gold["overall"]["reward"] == pytest.approx(sum(v["reward"] for v in gold["by_task"].values()) / 2)
    assert sum(v["n"] for v in gold["by_task_scenario"]["orchestration"].values()) == 6
    with pytest.raises(ValueError, match="2 samples but 1 completions"): ev.score_completions(te[:2], ["x"])


def test_generation_order_is_restored():
    class Echo:
        calls = []
        def generate(self, convs, n=1, **kw):
            self.calls.append(len(convs)); return [[c[-1]["content"][::-1]] for c in convs]
    from magicagent.core import Sample
    ss = [Sample(id=str(i), task="orchestration", messages=[{"role": "user", "content": "x" * (10 - i) + str(i)}]) for i in range(7)]
    g = Echo()
    out = ev.generate_completions(g, ss, batch_size=3, progress=False)
    assert out == [s.messages[-1]["content"][::-1] for s in ss] and g.calls == [3, 3, 1]


def test_batches_keep_to_the_token_budget_on_the_real_generator(split):
    "tiny-random's own tokenizer counts the prompts; every generate call stays within the budget, one task per call."
    from magicagent.models import get_generator
    _, test, _ = split
    ss = ev.load_split(test, 4)
    g = get_generator("tiny-random", batch_size=8)
    lengths = g.prompt_lengths([s.prompt for s in ss])
    budget = 2 * max(lengths)                # at most two of the longest prompts per batch
    calls, real = [], g.model.generate
    def spy(**kw):
        calls.append(tuple(kw["input_ids"].shape)); return real(**kw)
    g.model.generate = spy
    out = ev.generate_completions(g, ss, batch_size=8, max_new_tokens=2, progress=False, batch_tokens=budget)
    assert len(out) == len(ss) and all(isinstance(c, str) for c in out)
    assert sum(b for b, _ in calls) == len(ss) and len(calls) >= len({s.task for s in ss})
    assert all(b * w <= budget or b == 1 for b, w in calls), (calls, budget)
    assert max(w for _, w in calls) == max(lengths)          # the padded width is the longest prompt's token count
    calls.clear(); ev.generate_completions(g, ss, batch_size=8, max_new_tokens=2, progress=False)
    assert len(calls) == len({s.task for s in ss})            # no budget: one batch per task (4 prompts each)


def test_cli_batches_from_the_profile(split, tmp_path):
    _, test, _ = split
    cmd = [sys.executable, "-m", "magicagent.pipeline", "evaluate", "--model", "tiny-random", "--data", str(test),
           "--out", str(tmp_path / "e"), "--limit", "3", "--max-new-tokens", "2", "--no-progress",
           "--set", "eval_batch_size=3", "--set", "eval_batch_tokens=1"]
    def run(*extra):
        r = subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        res = json.loads((tmp_path / "e" / "heldout.json").read_text())
        return res["batch_size"], res["batch_tokens"], res["batches"]
    assert run() == (3, 1, 6)                                   # a one-token budget: every prompt alone
    assert run("--batch-tokens", "0") == (3, None, 2)           # 0: no budget, one batch of three per task
    assert run("--batch-tokens", "0", "--batch-size", "2") == (2, None, 4)
    bad = subprocess.run(cmd[:-1] + ["eval_batch_tokens=many"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "eval_batch_tokens" in bad.stderr
    zero = subprocess.run(cmd + ["--batch-size", "0"], capture_output=True, text=True, timeout=300)
    assert zero.returncode == 2 and "--batch-size: must be at least 1" in zero.stderr


def test_cli(split, tmp_path):
    _, test, _ = split
    cmd = [sys.executable, "-m", "magicagent.pipeline", "evaluate", "--model", "tiny-random", "--data", str(test),
           "--out", str(tmp_path / "e"), "--limit", "1", "--max-new-tokens", "4", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "e" / "heldout.json").read_text())
    assert set(res["by_task"]) == set(TASKS) and res["overall"]["n"] == 2 and "| scheduling |" in r.stdout
    assert len((tmp_path / "e" / "heldout_completions.jsonl").read_text().splitlines()) == 2
    bad = subprocess.run(cmd[:7] + [str(tmp_path / "missing")] + cmd[8:], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--data" in bad.stderr and "no such directory" in bad.stderr
    # the same greedy model against its own earlier evaluation: every prompt the same
    again = subprocess.run(cmd[:9] + [str(tmp_path / "e2")] + cmd[10:] + ["--against", str(tmp_path / "e")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "| **mean of tasks** | 2 | 0 | 0 | 2 | +0.000 | [+0.000, +0.000] |" in again.stdout
    nowhere = subprocess.run(cmd[:9] + [str(tmp_path / "e3")] + cmd[10:] + ["--against", str(tmp_path / "missing")],
                             capture_output=True, text=True, timeout=300)
    assert nowhere.returncode == 2 and "--against" in nowhere.stderr and not (tmp_path / "e3").exists()
    # the earlier rows are read before the evaluation, so --out may be the --against directory
    over = subprocess.run(cmd + ["--against", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=300)
    assert over.returncode == 0 and "| **mean of tasks** | 2 | 0 | 0 | 2 |" in over.stdout
    (tmp_path / "bad").mkdir(); (tmp_path / "bad" / "heldout_completions.jsonl").write_text('{"id": "a"}\n{oops\n')
    corrupt = subprocess.run(cmd[:9] + [str(tmp_path / "e4")] + cmd[10:] + ["--against", str(tmp_path / "bad")],
                             capture_output=True, text=True, timeout=300)
    assert corrupt.returncode == 2 and ":2:" in corrupt.stderr and not (tmp_path / "e4").exists()


def test_reuse_only_the_same_evaluation(split, tmp_path):
    _, test, _ = split
    class Count:
        n = 0
        def generate(self, convs, n=1, **kw):
            Count.n += len(convs); return [["Node:\n1: x\nEdge: (START,1) (1,END)"] for _ in convs]
    a = ev.evaluate("m", test, tmp_path, limit=2, max_new_tokens=8, generator=Count(), progress=False)
    assert Count.n == 4
    b = ev.evaluate("m", test, tmp_path, limit=2, max_new_tokens=8, generator=Count(), progress=False, reuse=True)
    assert Count.n == 4 and b == json.loads(json.dumps(a))        # read back, not regenerated
    ev.evaluate("m", test, tmp_path, limit=2, max_new_tokens=16, generator=Count(), progress=False, reuse=True)
    assert Count.n == 8                                             # another setting: evaluated again
    ev.evaluate("m", test, tmp_path, limit=1, max_new_tokens=16, generator=Count(), progress=False, reuse=True)
    assert Count.n == 10
    ev.evaluate("m", test, tmp_path, limit=1, max_new_tokens=16, generator=Count(), progress=False, reuse=False)
    assert Count.n == 12
    mdir = tmp_path / "model"; mdir.mkdir(); (mdir / "model.safetensors").write_bytes(b"v1")
    ev.evaluate(str(mdir), test, tmp_path, limit=1, generator=Count(), progress=False, reuse=True)
    ev.evaluate(str(mdir), test, tmp_path, limit=1, generator=Count(), progress=False, reuse=True)
    assert Count.n == 14                                            # the same weights: read back
    (mdir / "model.safetensors").write_bytes(b"v2 retrained")
    ev.evaluate(str(mdir), test, tmp_path, limit=1, generator=Count(), progress=False, reuse=True)
    assert Count.n == 16                                            # retrained in place: evaluated again


def test_eval_dtype_reaches_the_model(split, tmp_path):
    import torch
    from magicagent.models import get_generator
    g = get_generator("tiny-random", dtype="bfloat16")
    assert next(g.model.parameters()).dtype == torch.bfloat16
    _, test, _ = split
    res = ev.evaluate("tiny-random", test, tmp_path, limit=1, max_new_tokens=4, generator=g, progress=False, dtype="bfloat16")
    assert res["dtype"] == "bfloat16" and res["overall"]["n"] == 2


def test_paired_comparison_counts_and_interval():
    rng = random.Random(3)
    before, after = [], []
    for t in ("decomposition", "orchestration", "long_horizon"):
        for i in range(12):
            x = rng.choice([0.0, 1.0, 1.5])
            before.append({"id": f"{t}-{i}", "task": t, "total": x})
            after.append({"id": f"{t}-{i}", "task": t, "total": x + (0.5 if i % 4 == 0 else 0.0)})
    rng.shuffle(after)                                   # paired by id, not by position
    c = ev.paired_comparison(before, after, n_boot=500, seed=1)
    for t in ("decomposition", "orchestration", "long_horizon"):
        assert c["by_task"][t] == {**c["by_task"][t], "n": 12, "better": 3, "worse": 0, "same": 9}
        assert c["by_task"][t]["diff"] == pytest.approx(0.125)
    assert c["overall"]["diff"] == pytest.approx(0.125)
    lo, hi = c["overall"]["ci"]
    assert 0 < lo <= 0.125 <= hi < 0.5                   # every resample keeps some gains and no losses
    back = ev.paired_comparison(after, before, n_boot=500, seed=1)
    assert (back["overall"]["better"], back["overall"]["worse"]) == (0, 9)
    assert back["overall"]["diff"] == pytest.approx(-0.125)
    assert ev.paired_comparison(before, after, n_boot=500, seed=1) == c
    assert "| **mean of tasks** | 36 | 9 | 0 | 27 | +0.125 |" in ev.paired_table(c)


def test_paired_comparison_rejects_unpaired_rows():
    a = [{"id": "a", "task": "decomposition", "total": 1.0}]
    with pytest.raises(ValueError, match="different prompts"):
        ev.paired_comparison(a, [{"id": "b", "task": "decomposition", "total": 1.0}])
    with pytest.raises(ValueError, match="task 'decomposition' in one, 'scheduling'"):
        ev.paired_comparison(a, [{"id": "a", "task": "scheduling", "total": 1.0}])
    with pytest.raises(ValueError, match="after row 1: id 'a' appears twice"):
        ev.paired_comparison(a, a + a)
    with pytest.raises(ValueError, match="before row 0 has no 'total'"):
        ev.paired_comparison([{"id": "a", "task": "decomposition"}], a)


def test_an_unreachable_server_names_itself_and_the_sample(split, tmp_path):
    import os, socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]   # nothing listens there now
    test_dir = split[1]
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "evaluate", "--model", "m", "--backend", "openai",
                        "--data", str(test_dir), "--out", str(tmp_path / "e"), "--limit", "1", "--no-progress"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    assert r.returncode == 2 and f"http://127.0.0.1:{port}/v1: cannot reach the server" in r.stderr, r.stderr[-1500:]
    assert "generation failed on sample(s)" in r.stderr and "after 0 of" in r.stderr and "Traceback" not in r.stderr


def test_a_server_that_goes_away_keeps_what_it_answered(split, tmp_path):
    "The real OpenAI client against a local server whose model fails after two answers; the same evaluation then resumes."
    import threading
    from magicagent.models import OpenAIGenerator, get_generator, make_server
    tiny = get_generator("tiny-random")
    class GoesAway:
        def __init__(self, answers): self.left, self.asked = answers, 0
        def generate(self, convs, **kw):
            if self.left == 0: raise ConnectionError("model process gone")   # the handler dies: the client sees the connection drop
            self.left -= 1; self.asked += 1; return tiny.generate(convs, **kw)
    def serve(gen):
        srv = make_server(gen, "tiny"); threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv, OpenAIGenerator(f"http://127.0.0.1:{srv.server_address[1]}/v1", "tiny", timeout=60)
    _, test, _ = split
    out = tmp_path / "e"
    flaky = GoesAway(2); srv, client = serve(flaky)
    with pytest.raises(RuntimeError, match="the 2 completion\\(s\\) generated so far are kept in .*heldout_partial.jsonl"):
        ev.evaluate("tiny", test, out, backend="openai", limit=3, batch_size=1, max_new_tokens=3, generator=client, progress=False)
    srv.shutdown()
    kept = (out / "heldout_partial.jsonl").read_text().splitlines()
    assert len(kept) == 3 and json.loads(kept[0])["key"]["model"] == "tiny"
    with (out / "heldout_partial.jsonl").open("a") as f: f.write('{"id": "cut sho')     # a kill midway through a line
    healthy = GoesAway(99); srv, client = serve(healthy)       # resumed with another batch size (as after running out of memory)
    res = ev.evaluate("tiny", test, out, backend="openai", limit=3, batch_size=2, max_new_tokens=3, generator=client, progress=False)
    srv.shutdown()
    assert res["reused_completions"] == 2 and healthy.asked == 6 - 2 and res["overall"]["n"] == 6
    assert not (out / "heldout_partial.jsonl").exists()
    rows = list(read_jsonl(out / "heldout_completions.jsonl"))
    first = {json.loads(l)["id"]: json.loads(l)["completion"] for l in kept[1:]}
    assert all(r["completion"] == first[r["id"]] for r in rows if r["id"] in first) and len(rows) == 6
    # another evaluation (other settings) in the same directory does not take over these completions
    flaky = GoesAway(1); srv, client = serve(flaky)
    with pytest.raises(RuntimeError): ev.evaluate("tiny", test, out, backend="openai", limit=3, batch_size=1, max_new_tokens=3,
                                                  generator=client, progress=False)
    srv.shutdown(); srv, client = serve(GoesAway(99))
    res = ev.evaluate("tiny", test, out, backend="openai", limit=3, batch_size=1, max_new_tokens=4, generator=client, progress=False)
    srv.shutdown()
    assert res["reused_completions"] == 0 and res["max_new_tokens"] == 4
