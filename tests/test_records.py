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
