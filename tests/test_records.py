"""The committed records under papermill_runs/ are documentation: they must show what the current code does, come from one
run, and read as a report (no machine paths, no noise, tables rendered)."""
import json, re, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
def _committed_profiles() -> list:
    "The profiles whose record is committed (papermill_runs/smoke/ is a scratch run, ignored by git)."
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", "papermill_runs/*/status.json"], capture_output=True, text=True)
    if r.returncode == 0: return sorted(Path(f).parent.name for f in r.stdout.split())
    return sorted(p.parent.name for p in (ROOT / "papermill_runs").glob("*/status.json") if p.parent.name != "smoke")

PROFILES = _committed_profiles()
NOISE = ("Unable to parse line", "Passed unknown parameter", "running over TCP without encryption", "IProgress not found",
         "Loading weights:", "Writing model shards:", "{'loss':", "{'train_runtime':")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users)/[\w.-]+")


def records(profile):
    return sorted((ROOT / "papermill_runs" / profile).glob("[0-9][0-9]_*.ipynb"))


def code_cells(nb:dict) -> list:
    tags = lambda c: c.get("metadata", {}).get("tags", [])
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"]
            if c["cell_type"] == "code" and "injected-parameters" not in tags(c)]


def outputs_text(nb:dict, rendered:bool=True) -> str:
    "The text of a notebook's outputs: streams and plain text, and (with `rendered`) Markdown and HTML."
    out = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            if "text" in o: out.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            for k, v in (o.get("data") or {}).items():
                if k == "text/plain" or (rendered and k.startswith("text/")): out.append("".join(v) if isinstance(v, list) else v)
    return "\n".join(out)


def git(*args):
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.mark.parametrize("profile", PROFILES)
def test_every_record_shows_the_notebook_as_it_is_now(profile):
    "A record whose notebook was edited after the run is stale: its code cells must be the notebook's."
    stale = []
    for rec in records(profile):
        src = ROOT / "nbs" / rec.name
        if not src.exists(): stale.append(f"{rec.name}: no such notebook in nbs/"); continue
        if code_cells(json.loads(rec.read_text())) != code_cells(json.loads(src.read_text())): stale.append(rec.name)
    assert not stale, f"papermill_runs/{profile}: records older than their notebooks: {stale}; re-run `magicagent run --profile {profile}`"


@pytest.mark.parametrize("profile", PROFILES)
def test_the_records_come_from_one_run_of_the_current_code(profile):
    st = json.loads((ROOT / "papermill_runs" / profile / "status.json").read_text())
    nbs = st.get("notebooks", {})
    assert set(nbs) >= {r.stem for r in records(profile)}, "a record that status.json does not list"
    commits = {v.get("commit") for v in nbs.values()}
    assert len(commits) == 1 and None not in commits, f"records from several commits: {commits}"
    assert all(v.get("status") == "completed" and not v.get("dirty") for v in nbs.values())
    commit = commits.pop()
    if git("cat-file", "-e", f"{commit}^{{commit}}") is None: pytest.skip("the record's commit is not in this clone's history")
    changed = git("diff", "--name-only", commit, "HEAD", "--", "nbs", "magicagent", "settings.ini")
    assert changed == "", f"code changed since the record's run ({commit[:10]}): {changed.splitlines()[:10]}"


@pytest.mark.parametrize("profile", PROFILES)
def test_records_carry_no_machine_paths_and_no_noise(profile):
    bad = []
    for rec in records(profile):
        text = outputs_text(json.loads(rec.read_text()))
        bad += [f"{rec.name}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)][:3]
        bad += [f"{rec.name}: {n!r}" for n in NOISE if n in text]
        raw = outputs_text(json.loads(rec.read_text()), rendered=False)
        bad += [f"{rec.name}: a table printed as raw text" for line in raw.splitlines() if re.match(r"^\|\s*:?-{3,}", line.strip())][:1]
    assert not bad, bad[:20]


def test_a_smoke_run_prints_no_noise_and_renders_its_tables(tmp_path):
    "A real `magicagent run --profile smoke` over notebooks that train with TRL, write tables and read results: the terminal and the records stay quiet."
    import shutil, sys
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs"); shutil.copy(ROOT / "settings.ini", tmp_path / "settings.ini")
    only = ["00_core", "41_rl", "59_moe_losses", "80_experiments"]
    r = subprocess.run([sys.executable, "-m", "magicagent.cli", "run", "--profile", "smoke", "--nbs", str(tmp_path / "nbs"), "--only", *only],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    said = r.stdout + r.stderr
    assert not [n for n in NOISE + ("Traceback", "Warning:") if n in said], said[-3000:]
    for name in only:
        nb = json.loads((tmp_path / "papermill_runs" / "smoke" / f"{name}.ipynb").read_text())
        text, raw = outputs_text(nb), outputs_text(nb, rendered=False)
        assert not [n for n in NOISE if n in text], name
        assert not [l for l in raw.splitlines() if re.match(r"^\|\s*:?-{3,}", l.strip())], f"{name}: a table printed as raw text"


@pytest.mark.parametrize("profile", PROFILES)
def test_the_readme_states_the_records_numbers(profile):
    "The README's summary of a committed record (`<!-- record:NAME -->` in nbs/index.ipynb) is rendered from that record's files, so it cannot drift from them."
    from magicagent.pipeline import record_summary
    index = (ROOT / "nbs" / "index.ipynb").read_text()
    if f"<!-- record:{profile} -->" not in index: pytest.skip(f"nbs/index.ipynb does not summarise the {profile} record")
    summary = record_summary(ROOT / "papermill_runs" / profile)
    assert summary in (ROOT / "README.md").read_text(), "README.md is older than the record: run `magicagent readme`"
