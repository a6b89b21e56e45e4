"The layout of the package: its import graph, module sizes, and a command line that answers before anything heavy loads."
import ast, json, subprocess, sys
from pathlib import Path
import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "magicagent"
MAX_LINES = 600


def modules() -> dict:
    "{dotted module name: path} of every library module (but the generated index `_modidx`)."
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        if f.name == "_modidx.py": continue
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name:str, path:Path) -> list:
    "`(imported magicagent module, line, at module level)` for every import statement of a module, relative ones resolved."
    tree, pkg = ast.parse(path.read_text()), name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else: mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else: continue
        for n in names:
            if n == "magicagent" or n.startswith("magicagent."): found.append((n, node.lineno, id(node) in top))
    return found


def graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph(); g.add_nodes_from(mods)
    for m, f in mods.items():
        for target, line, _ in imports(m, f):
            t = target
            while t not in mods and "." in t: t = t.rsplit(".", 1)[0]      # `from magicagent.core import Sample` -> magicagent.core
            if t in mods and t != m and t != "magicagent": g.add_edge(m, t, line=line)
    return g


def test_the_import_graph_has_no_cycle():
    g = graph()
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles[:5]}"
    assert len(g) > 15 and g.number_of_edges() > 20          # the walk found the package


def test_no_library_module_imports_the_pipeline():
    g = graph()
    users = sorted(m for m in g.predecessors("magicagent.pipeline"))
    assert not users, f"library modules importing magicagent.pipeline: {users}"


def test_internal_imports_sit_at_the_top_of_modules():
    late = [f"{m}:{line} imports {t}" for m, f in modules().items() for t, line, at_top in imports(m, f) if not at_top]
    assert not late, "internal imports inside functions: " + "; ".join(late)


def test_no_module_is_over_600_lines():
    long = {m: n for m, f in modules().items() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_graph_walk_sees_relative_and_nested_imports(tmp_path):
    "The checks above would fail on a cycle, a pipeline import or a late import (checked on a made-up module)."
    f = tmp_path / "x.py"
    f.write_text("from .core import Sample\nimport magicagent.models\ndef g():\n    from magicagent.pipeline import main\n")
    got = imports("magicagent.x", f)
    assert ("magicagent.core", 1, True) in got and ("magicagent.models", 2, True) in got
    assert ("magicagent.pipeline", 4, False) in got


@pytest.mark.parametrize("verb", ["synth", "select", "score", "serve", "sft", "grpo", "evaluate", "run", "profiles", "readme"])
def test_help_answers_without_torch(verb):
    code = ("import sys\nfrom magicagent.cli import main\n"
            f"rc = main([{verb!r}, '--help'])\n"
            "print(rc, sorted(m for m in ('torch', 'transformers', 'trl', 'sentence_transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    rc, heavy = r.stdout.strip().splitlines()[-1].split(" ", 1)
    assert rc == "0" and heavy == "[]", r.stdout[-500:]
    assert f"magicagent {verb}" in r.stdout


@pytest.mark.parametrize("argv", [["sft", "--set", "sft_lrr=1"], ["grpo", "--max-steps", "x"], ["evaluate", "--model", "m", "--limit", "0"],
                                  ["select", "--budget", "3", "--out", "/tmp/x"]])
def test_argument_errors_answer_without_torch(argv):
    code = ("import sys\nfrom magicagent.cli import main\n"
            f"rc = main({argv!r})\nprint(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], (r.stdout, r.stderr)
    assert r.stderr.startswith(f"magicagent {argv[0]}: error:") and "Traceback" not in r.stderr


def test_the_readme_lists_every_notebook_with_its_module():
    "The README's table (from nbs/index.ipynb) names each numbered notebook and the module it exports, so it cannot drift."
    import re
    root = PKG.parent
    readme = (root / "README.md").read_text()
    rows = dict(re.findall(r"^\|[^|]*\| `(\d\d_\w+)` \| `([\w.]+)` \|$", readme, re.M))
    missing = []
    for nb in sorted((root / "nbs").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        exp = next((m.group(1) for c in cells if c["cell_type"] == "code"
                    for m in [re.search(r"#\|\s*default_exp\s+(\S+)", "".join(c["source"]))] if m), None)
        want = "magicagent." + exp.removesuffix(".__init__") if exp else None
        if rows.get(nb.stem) != want: missing.append(f"{nb.stem}: README says {rows.get(nb.stem)}, exports {want}")
    assert not missing, missing
