"""Bad input at every verb of the command line: exit code 2, one message naming the field, line or path, no traceback,
and no file that existed before changed."""
import hashlib, json, os, signal, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "magicagent.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env=env)


def tree(d:Path) -> dict:
    "{relative path: sha256} of every file under `d`."
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    "A workspace with good and broken inputs of every kind."
    w = tmp_path_factory.mktemp("bad")
    (w / "pool").mkdir()
    for t in ("decomposition", "orchestration"):
        (w / "pool" / f"{t}.jsonl").write_text((SAMPLES / f"{t}.jsonl").read_text())
    (w / "empty").mkdir(); (w / "empty" / "decomposition.jsonl").write_text("")
    (w / "broken").mkdir()
    lines = (SAMPLES / "decomposition.jsonl").read_text().splitlines()
    (w / "broken" / "decomposition.jsonl").write_text("\n".join(lines[:2] + ['{"id": "x", "task": "decomposition", "messages": [}'] + lines[2:]) + "\n")
    (w / "notask").mkdir()
    (w / "notask" / "decomposition.jsonl").write_text(json.dumps({"id": "x", "task": "cooking", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    (w / "a_file.txt").write_text("not a directory\n")
    (w / "emb.txt").write_text("not an array\n")
    np.save(w / "nan.npy", np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]]))
    (w / "bad.json").write_text("{not json")
    (w / "heldout").mkdir()
    (w / "heldout" / "decomposition.jsonl").write_text((SAMPLES / "decomposition.jsonl").read_text())
    (w / "noeval").mkdir()
    (w / "synth_out").mkdir()
    (w / "synth_out" / "scheduling-trip.jsonl").write_text("kept as it was\n")
    (w / "synth_bad_manifest").mkdir(); (w / "synth_bad_manifest" / "manifest.json").write_text("{half")
    (w / "nbs_missing").mkdir()
    return w


# (id, argv (a {w} in an argument is the workspace), what the message must contain)
CASES = [
    ("synth-n-zero", ["synth", "--task", "decomposition", "--n", "0", "--out", "{w}/o1"], "--n: must be at least 1"),
    ("synth-n-negative", ["synth", "--task", "decomposition", "--n", "-5", "--out", "{w}/o1"], "--n: must be at least 1"),
    ("synth-n-not-a-number", ["synth", "--task", "decomposition", "--n", "ten", "--out", "{w}/o1"], "--n: expected an integer"),
    ("synth-out-is-a-file", ["synth", "--task", "decomposition", "--n", "2", "--out", "{w}/a_file.txt"], "a_file.txt is a file"),
    ("synth-out-inside-a-file", ["synth", "--task", "decomposition", "--n", "2", "--out", "{w}/a_file.txt/sub"], "a_file.txt is a file"),
    ("synth-out-unwritable", ["synth", "--task", "decomposition", "--n", "2", "--out", "/proc/magicagent-out"], "/proc"),
    ("synth-would-overwrite", ["synth", "--task", "scheduling", "--subtask", "trip", "--n", "2", "--out", "{w}/synth_out"], "scheduling-trip.jsonl exists"),
    ("synth-unknown-task", ["synth", "--task", "cooking", "--n", "2", "--out", "{w}/o1"], "--task: invalid choice: 'cooking'"),
    ("synth-subtask-of-another-task", ["synth", "--task", "decomposition", "--subtask", "trip", "--n", "2", "--out", "{w}/o1"], "only scheduling has subtasks"),
    ("synth-corrupt-manifest", ["synth", "--task", "orchestration", "--n", "1", "--out", "{w}/synth_bad_manifest"], "manifest.json: not JSON"),
    ("select-missing-dir", ["select", "--in", "{w}/nowhere", "--budget", "3", "--out", "{w}/s1"], "nowhere: no such directory"),
    ("select-in-is-a-file", ["select", "--in", "{w}/a_file.txt", "--budget", "3", "--out", "{w}/s1"], "is a file, not a directory"),
    ("select-empty-pool", ["select", "--in", "{w}/empty", "--budget", "3", "--out", "{w}/s1"], "hold no records"),
    ("select-malformed-line", ["select", "--in", "{w}/broken", "--budget", "3", "--out", "{w}/s1"], "decomposition.jsonl:3"),
    ("select-unknown-task-field", ["select", "--in", "{w}/notask", "--budget", "1", "--out", "{w}/s1"], "field `task` is 'cooking'"),
    ("select-budget-over-pool", ["select", "--in", "{w}/pool", "--budget", "500", "--out", "{w}/s1"], "--budget 500 is larger than the pool (24 records)"),
    ("select-budget-zero", ["select", "--in", "{w}/pool", "--budget", "0", "--out", "{w}/s1"], "--budget: must be at least 1"),
    ("select-neighbors-too-large", ["select", "--in", "{w}/pool", "--budget", "3", "--neighbors", "40", "--out", "{w}/s1"], "--neighbors 23 or fewer"),
    ("select-unknown-embedder", ["select", "--in", "{w}/pool", "--budget", "3", "--embedder", "nope-model", "--out", "{w}/s1"], "embedder 'nope-model'"),
    ("select-embeddings-not-npy", ["select", "--embeddings", "{w}/emb.txt", "--budget", "2", "--out", "{w}/s1"], "emb.txt: not a .npy array"),
    ("select-embeddings-nan", ["select", "--embeddings", "{w}/nan.npy", "--budget", "2", "--out", "{w}/s1"], "row 1 contains NaN"),
    ("select-per-task-without-records", ["select", "--embeddings", "{w}/nan.npy", "--budget", "2", "--per-task", "--out", "{w}/s1"], "--per-task/--by-subtask need --in"),
    ("score-missing-gold", ["score", "worfbench", "--gold", "{w}/nogold.json", "--pred", "{w}/bad.json"], "nogold.json: no such file"),
    ("score-unknown-benchmark", ["score", "mmlu"], "invalid choice: 'mmlu'"),
    ("score-naturalplan-not-json", ["score", "naturalplan", "--task", "trip", "--data", "{w}/bad.json"], "bad.json"),
    ("sft-unknown-key", ["sft", "--set", "sft_lrr=1e-4"], "--set sft_lrr: profile 'smoke' has no such value"),
    ("sft-wrong-type", ["sft", "--set", "sft_lr=fast"], "--set sft_lr='fast': expected a number"),
    ("sft-missing-data", ["sft", "--data", "{w}/none.jsonl"], "none.jsonl: no such file"),
    ("sft-malformed-data", ["sft", "--data", "{w}/broken/decomposition.jsonl", "--out", "{w}/sft1"], "decomposition.jsonl:3"),
    ("sft-unknown-profile", ["sft", "--profile", "laptop"], "unknown profile 'laptop'"),
    ("grpo-steps-not-a-number", ["grpo", "--max-steps", "x"], "--max-steps: expected an integer"),
    ("grpo-no-sft-policy", ["grpo", "--run-root", "{w}/runs_none"], "no SFT policy at"),
    ("evaluate-missing-data", ["evaluate", "--model", "tiny-random", "--data", "{w}/nowhere"], "nowhere: no such directory"),
    ("evaluate-limit-zero", ["evaluate", "--model", "tiny-random", "--data", "{w}/heldout", "--limit", "0"], "--limit: must be at least 1"),
    ("evaluate-against-without-completions", ["evaluate", "--model", "tiny-random", "--data", "{w}/heldout", "--against", "{w}/noeval", "--out", "{w}/e1"], "heldout_completions.jsonl"),
    ("evaluate-unknown-backend", ["evaluate", "--model", "tiny-random", "--backend", "onnx"], "--backend: invalid choice"),
    ("run-wrong-type", ["run", "-p", "n_per_task=abc", "--only", "00_core"], "-p n_per_task='abc': expected an integer"),
    ("run-unused-value", ["run", "-p", "n_per_task=5", "--only", "00_core"], "it is taken by"),
    ("run-unknown-key", ["run", "-p", "n_per_taks=5"], "no notebook and no profile value has that name"),
    ("run-unknown-profile", ["run", "--profile", "smok"], "unknown profile 'smok'"),
    ("run-unknown-notebook", ["run", "--only", "99"], "no notebook matches '99'"),
    ("run-not-key-value", ["run", "-p", "n_per_task"], "expects KEY=VALUE"),
    ("profiles-unknown", ["profiles", "laptop"], "unknown profile 'laptop'"),
    ("serve-bad-port", ["serve", "--port", "-1"], "--port: must be at least 0"),
    ("serve-missing-model", ["serve", "--model", "./no/such/model"], "does not exist"),
    ("readme-outside-checkout", ["readme"], "no nbs/ directory"),
    ("unknown-verb", ["sinth"], "did you mean 'synth'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(ws, case):
    name, argv, want = case
    before = tree(ws)
    r = cli(*[a.replace("{w}", str(ws)) for a in argv], cwd=ws / "nbs_missing" if argv[0] == "readme" else None)
    err = r.stderr.replace(str(ws), "{w}")
    assert r.returncode == 2, (name, r.returncode, r.stderr[-1500:])
    assert want.replace("{w}", str(ws)) in r.stderr or want in err, (name, r.stderr[-1500:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, (name, r.stderr[-1500:])
    assert len([l for l in r.stderr.splitlines() if "error:" in l]) == 1, (name, r.stderr[-1500:])
    assert tree(ws) == {**before, **{k: v for k, v in tree(ws).items() if k not in before}}, f"{name}: an existing file changed"


def test_there_are_enough_cases_across_every_verb():
    from magicagent.cli import COMMANDS
    verbs = {c[1][0] for c in CASES}
    assert len(CASES) >= 25
    assert set(COMMANDS) - {"xpo", "moe", "bench", "report"} <= verbs, set(COMMANDS) - verbs


def test_a_killed_synthesis_resumes_without_losing_the_earlier_file(ws, tmp_path):
    "An interrupted run leaves what was written before intact; running it again (with --force) completes it."
    out = tmp_path / "o"
    assert cli("synth", "--task", "orchestration", "--n", "3", "--out", out, "--no-progress").returncode == 0
    first = (out / "orchestration.jsonl").read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "magicagent.cli", "synth", "--task", "orchestration", "--n", "2000", "--out", str(out),
                          "--force", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try: p.wait(timeout=4)
    except subprocess.TimeoutExpired: p.send_signal(signal.SIGINT); p.wait(timeout=60)      # Ctrl-C midway
    assert (out / "orchestration.jsonl").read_bytes() == first                 # written atomically: the old file stands
    assert not [f for f in out.iterdir() if f.name.startswith(".")]            # no temporary file left behind
    assert cli("synth", "--task", "orchestration", "--n", "3", "--out", out, "--force", "--no-progress").returncode == 0
    assert (out / "orchestration.jsonl").read_bytes() == first                 # same seed, same bytes
