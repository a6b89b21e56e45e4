"The report of the paper's evidence: built from synthetic run files for every table and figure; the paper's numbers checked against its text."
import json, random, re, subprocess, sys
from pathlib import Path
import pytest
from magicagent import experiments as X
from magicagent.core import RunDir, write_json

PAPER = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "paper" / "magicagent-paper.txt",
                          Path("/work/shared/paper/magicagent-paper.txt")) if p.exists()), Path("magicagent-paper.txt"))


def fixture_results(rd:RunDir, seed:int=0):
    "Made-up rows in the shape each stage writes, for every result file the report reads."
    r = random.Random(seed)
    models = ["smollm2-135m", "sft/final", "grpo/final"]
    rows = {
        "table2": [{"benchmark": "bfcl", "category": c, "model": m, "metric": "accuracy", "value": r.random(), "n": 50}
                   for c in ("simple", "multiple", "irrelevance") for m in models],
        "table7": [{"model": "smollm2-135m", "concurrency": c, "ttft_s": r.random(), "tpot_s": r.random() / 10, "latency_s": 5 * r.random(),
                    "throughput_tok_s": 100 * r.random()} for c in (1, 2)],
        "heldout": [{"label": l, "model": m, "task": t, "scenario": "all", "n": 10, "format": r.random(), "content": r.random(), "reward": 2 * r.random()}
                    for l, m in zip(("base", "sft", "grpo"), models) for t in ("decomposition", "tool_planning")],
        "magiceval": [{"label": l, "model": m, "task": t, "scenario": sc, "metric": k, "value": r.random(), "n": 3}
                      for l, m in zip(("base", "sft", "grpo"), models) for t, ks in (("decomposition", ("step_acc", "embed_acc")),
                                                                                     ("tool_planning", ("tool_name_acc",)),
                                                                                     ("long_horizon", ("tool_name_acc", "tool_arg_acc")))
                      for sc in ("all", "general", "dependency", "condition", "context_inheritance") for k in ks],
        "grpo_vs_sft": [{"task": t, "n": 10, "better": 2, "worse": 1, "same": 7, "diff": 0.05, "ci_low": -0.01, "ci_high": 0.12, "level": 0.95}
                        for t in ("decomposition", "mean of tasks")],
        "offline_rl": [{"series": s, "step": i, "value": r.random()} for s in ("reward", "kl") for i in range(1, 6)],
        "table5": [{"method": m, "seed": s, "split": sp, "succ_star": r.random(), "succ": r.random()}
                   for m in ("grpo", "epo", "x2po") for s in range(3) for sp in ("id", "ood")],
        "figure8": [{"method": m, "seed": 0, "step": i, "reward": r.random(), "success": r.random(), "think_entropy": 1 + r.random(),
                     "action_entropy": 0.1 * r.random(), "id_success": None, "ood_success": None} for m in ("grpo", "x2po") for i in range(1, 8)],
        "table6": [{"variant": v, "seed": s, "maxvio": r.random(), "mi_bits": r.random(), "heldout_loss": 2 + r.random()}
                   for v in X.MOE_ORDER for s in range(2)],
        "figure9_maxvio": [{"variant": v, "seed": s, "step": i, "maxvio": 0.1 + r.random(), "maxvio_layers": [0.1, 0.2]}
                           for v in X.MOE_ORDER for s in range(2) for i in range(5)],
        "figure10_experts": [{"variant": v, "seed": 0, "task": t, "layer": 0, "counts": [r.randrange(100) for _ in range(4)]}
                             for v in ("micro", "global") for t in ("scheduling", "orchestration")],
        "novelsum_scaling": [{"n": 1000, "k": 100, "device": "cpu", "seconds": 1.0, "peak_mb": 300, "projected": False},
                             {"n": 200000, "k": 10000, "device": "cuda", "seconds": 3600, "peak_mb": 20000, "projected": True}],
    }
    for t, v in rows.items(): write_json(rd.results(t), v)
    return rows


def test_every_section_builds_from_fixture_files(tmp_path):
    rd = RunDir("smoke", tmp_path)
    rows = fixture_results(rd)
    assert set(rows) == set(X.SOURCES)                          # the fixture covers every file the report reads
    secs = X.build_report(rd)
    assert [s.missing for s in secs] == [[]] * len(secs), {s.title: s.missing for s in secs if s.missing}
    figs = {stem for s in secs for stem, _ in s.figures}
    assert figs == {"figure8", "figure9", "figure10"}
    md = X.report_markdown(secs, "smoke")
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Figure 8", "Figure 9", "Figure 10", "GRPO against SFT"):
        assert title in md
    assert "**The paper**" in md and "**This run** (profile `smoke`" in md
    t5 = next(s for s in secs if s.title.startswith("Table 5")).text[1]        # ours: mean over three seeds
    want = 100 * sum(x["succ_star"] for x in rows["table5"] if x["method"] == "x2po" and x["split"] == "id") / 3
    assert f"| x2po | 3 | {want:.1f} |" in t5


def test_the_report_command_writes_markdown_and_figures(tmp_path):
    fixture_results(RunDir("smoke", tmp_path))
    r = subprocess.run([sys.executable, "-m", "magicagent.cli", "report", "--profile", "smoke", "--run-root", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "smoke" / "report"
    assert (out / "report.md").exists() and {p.name for p in out.glob("*.png")} == {"figure8.png", "figure9.png", "figure10.png"}
    assert json.loads((out / "missing.json").read_text()) == {}


def test_a_stage_that_did_not_run_is_reported_missing_never_filled_in(tmp_path):
    rd = RunDir("smoke", tmp_path)
    rows = fixture_results(rd)
    rd.results("table6").unlink(); rd.results("table5").write_text("{not json")
    secs = {s.title: s for s in X.build_report(rd)}
    t6 = secs["Table 6: MoE balance-loss ablation"]
    assert any("results/table6.json` is missing: run `60_moe`" in m for m in t6.missing) and len(t6.text) == 1    # the paper's table only
    assert any("not JSON" in m for m in secs["Table 5: online RL (success, %)"].missing)


def _paper_cells(row_label:str, table_start:str) -> list:
    "The numbers of one row of one of the paper's Markdown tables, read from the paper's text."
    lines = PAPER.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith(table_start))
    while lines[i].startswith("|"):
        cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        if cells[0] == row_label or cells[:2] == row_label.split(" / "):
            return [float(re.match(r"-?\d+(\.\d+)?", c).group(0)) if re.match(r"-?\d", c) else None for c in cells]
        i += 1
    raise KeyError(row_label)


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside the checkout")
def test_the_transcribed_numbers_match_the_paper():
    r = random.Random(0)
    checks = 0
    t2 = X.paper_rows("table2")
    for row in r.sample(t2, 20):
        cells = _paper_cells(row["model"], "| Models | WorfBench | NaturalPlan")
        cols = list(dict.fromkeys((x["benchmark"], x["metric"]) for x in t2))
        assert cells[1 + cols.index((row["benchmark"], row["metric"]))] == row["value"], row; checks += 1
    t5 = X.paper_rows("table5", model="Qwen2.5-3B", method="EPO")
    cells = _paper_cells("Qwen2.5-3B / EPO", "| Models | Methods | IID | IID | OOD | OOD |")
    assert [x["value"] for x in t5] == cells[2:6]; checks += 1
    for row in X.paper_rows("table7")[:4]:
        lines = [l for l in PAPER.read_text().splitlines() if l.startswith(f"| {row['model']} |") and l.rstrip().endswith(f"| {row['concurrency']} |")]
        assert lines and f"{row['ttft_s']:.3f}" in lines[0]; checks += 1
    t6 = X.paper_rows("table6", variant="global")
    assert {(x["benchmark"], x["metric"]): x["value"] for x in t6}[("worfbench", "chain")] == 79.3   # the text: "F1 Chain (79.3%)"
    assert "79.3%" in PAPER.read_text(); checks += 1
    assert checks >= 25
