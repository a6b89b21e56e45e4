"JSONL I/O, the Sample record, seeds: what the core notebook cannot show."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
from magicagent.core import (Sample, SampleError, validate_sample, read_jsonl, write_jsonl, JSONLError,
                             derive_seed, RunDir, check_task)

REC = {"id": "orchestration-x-000001", "task": "orchestration", "scenario": "general",
       "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Node:\n1: a\nEdge: (START,1) (1,END)"}],
       "gold": {"nodes": ["a"], "edges": [[0, 1], [1, 2]]}}

@pytest.mark.parametrize("field,value,needle", [
    ("task", "planning", "field `task`"), ("id", "", "field `id`"), ("messages", [], "field `messages`"),
    ("scenario", "weird", "field `scenario`"), ("tools", [{"function": {}}], "tools[0].function.name"),
    ("meta", [], "field `meta`")])
def test_validation_names_the_field(field, value, needle):
    with pytest.raises(SampleError, match=f"data.jsonl:7: .*{needle.replace('[', '.').replace(']', '.')}"):
        validate_sample({**REC, field: value}, where="data.jsonl:7")

def test_missing_field():
    d = dict(REC); d.pop("messages")
    with pytest.raises(SampleError, match="missing field `messages`"): validate_sample(d)

def test_roundtrip_through_file(tmp_path):
    s = validate_sample(REC)
    write_jsonl(tmp_path / "x.jsonl", [s] * 3)
    got = list(read_jsonl(tmp_path / "x.jsonl", as_sample=True))
    assert got == [s] * 3

def test_corrupt_line_reported_with_file_and_line(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text(json.dumps(REC) + "\n\n" + json.dumps(REC) + "\n" + '{"id": "broken"\n' + json.dumps({**REC, "task": "nope"}) + "\n")
    with pytest.raises(JSONLError, match=r"data.jsonl:4: invalid JSON"):
        list(read_jsonl(p))
    stats = {}
    assert len(list(read_jsonl(p, skip_bad=True, stats=stats, as_sample=True))) == 2
    assert stats["bad"] == 2 and stats["read"] == 2
    assert stats["bad_lines"][0].endswith("delimiter at column 16)") and ":4:" in stats["bad_lines"][0]
    assert ":5:" in stats["bad_lines"][1] and "field `task`" in stats["bad_lines"][1]

def test_killed_write_leaves_old_file_intact(tmp_path):
    "A process killed (SIGKILL) in the middle of a large write leaves the previous file as it was."
    target = tmp_path / "data.jsonl"
    write_jsonl(target, [REC] * 5)
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import sys, time
        from magicagent.core import write_jsonl
        rec = {REC!r}
        def gen():
            for i in range(10**7):
                if i == 2000: print("midway", flush=True)
                yield rec
        write_jsonl({str(target)!r}, gen())
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "midway"
    time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    leftovers = [f.name for f in tmp_path.iterdir() if f.name != "data.jsonl"]
    assert all(n.startswith(".data.jsonl.") for n in leftovers)   # only the dead temporary file

def test_derive_seed_is_stable_across_processes():
    out = subprocess.run([sys.executable, "-c", "from magicagent.core import derive_seed; print(derive_seed(3, 'trip', 17))"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert int(out) == derive_seed(3, "trip", 17)
    assert len({derive_seed(0, "t", i) for i in range(10000)}) == 10000

def test_rundir_and_tasks(tmp_path):
    rd = RunDir("cpu", root=tmp_path)
    assert rd.synth_file("long_horizon") == tmp_path / "cpu/synth/long_horizon.jsonl"
    assert rd.eval_dir("Qwen/Qwen3-32B").name == "Qwen__Qwen3-32B"
    with pytest.raises(ValueError, match="expected one of"): check_task("Scheduling")
