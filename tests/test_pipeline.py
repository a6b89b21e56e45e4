"The papermill runner and the CLI, end to end in subprocesses, on small notebooks made here."
import json, subprocess, sys, shlex
from pathlib import Path
import nbformat, pytest
from magicagent.profiles import load_profile, config_path
from magicagent.pipeline import launch_command, sbatch_script, run_pipeline, NotebookFailed

def nb(path, code, params="x = 1\nout = 'none'"):
    n = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    p = nbformat.v4.new_code_cell(params); p.metadata["tags"] = ["parameters"]
    n.cells = [nbformat.v4.new_markdown_cell("# t"), p, nbformat.v4.new_code_cell(code)]
    nbformat.write(n, path)

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "magicagent.pipeline", *args], capture_output=True, text=True, cwd=cwd)

@pytest.fixture
def project(tmp_path):
    (tmp_path / "nbs").mkdir()
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nx = 1\n[smoke]\nx = 2\n[cpu]\nx = 3\n")
    nb(tmp_path / "nbs/00_core.ipynb", "from pathlib import Path\nPath(out).write_text(str(x)) if out != 'none' else None")
    nb(tmp_path / "nbs/10_second.ipynb", "y = x * 2")
    return tmp_path

def test_run_skip_and_params(project):
    out = project / "x.txt"
    r = cli("run", "--profile", "cpu", "--nbs", str(project / "nbs"), "-p", f"out={out}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"00_core": "ran", "10_second": "ran"}
    assert out.read_text() == "3"                                    # the profile's value reached the notebook
    runs = project / "papermill_runs/cpu"
    assert (runs / "00_core.ipynb").exists() and (runs / "10_second.ipynb").exists()
    r = cli("run", "--profile", "cpu", "--nbs", str(project / "nbs"), "-p", f"out={out}")
    assert json.loads(r.stdout) == {"00_core": "skipped", "10_second": "skipped"}
    r = cli("run", "--profile", "cpu", "--nbs", str(project / "nbs"), "-p", f"out={out}", "-p", "x=41")
    assert json.loads(r.stdout) == {"00_core": "ran", "10_second": "ran"} and out.read_text() == "41"
    r = cli("run", "--profile", "cpu", "--nbs", str(project / "nbs"), "-p", f"out={out}", "-p", "x=41", "--force", "--only", "10")
    assert json.loads(r.stdout) == {"10_second": "ran"}

def test_failure_names_notebook_and_cell(project):
    nb(project / "nbs/20_broken.ipynb", "raise ValueError('bad input on purpose')")
    nb(project / "nbs/30_after.ipynb", "z = 1")
    r = cli("run", "--profile", "smoke", "--nbs", str(project / "nbs"))
    assert r.returncode == 1
    assert "20_broken.ipynb failed in cell 2" in r.stderr and "ValueError: bad input on purpose" in r.stderr
    runs = project / "papermill_runs/smoke"
    assert (runs / "00_core.ipynb").exists() and (runs / "10_second.ipynb").exists()   # earlier results kept
    assert (runs / "20_broken.failed.ipynb").exists() and not (runs / "30_after.ipynb").exists()

def test_help_and_unknown():
    assert cli("--help").returncode == 0
    r = cli("nonsense"); assert r.returncode == 2 and "unknown command" in r.stderr
    r = cli("profiles", "full"); assert json.loads(r.stdout)["num_gpus"] == 32

def test_full_profile_table8():
    full = load_profile("full")
    assert (full["model"], full["moe_model"]) == ("Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B")
    assert (full["sft_lr"], full["grpo_lr"], full["sft_batch_size"], full["grpo_batch_size"]) == (1e-5, 1e-6, 4, 1)
    assert (full["grpo_num_generations"], full["temperature"], full["top_p"], full["top_k"]) == (8, 0.9, 0.96, 20)
    assert (full["weight_decay"], full["adam_beta1"], full["adam_beta2"], full["lr_scheduler"]) == (0.01, 0.9, 0.95, "cosine")
    assert (full["max_prompt_length"], full["max_new_tokens"], full["num_gpus"], full["num_nodes"]) == (20480, 2048, 32, 4)
    assert (full["moe_aux_loss_coeff"], full["moe_z_loss_coeff"]) == (1e-4, 5e-4)

def test_launch_command_and_configs():
    full = load_profile("full")
    cmd = launch_command("sft", full)
    assert cmd[:2] == ["accelerate", "launch"]
    kv = dict(zip(cmd[2::1], cmd[3::1]))
    assert kv["--num_processes"] == "32" and kv["--num_machines"] == "4" and kv["--mixed_precision"] == "bf16"
    assert kv["--deepspeed_multinode_launcher"] == "standard"       # one launch per node under srun, no pdsh
    ds = json.loads(Path(kv["--deepspeed_config_file"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] == "auto"
    assert cmd[-5:] == ["-m", "magicagent.cli", "sft", "--profile", "full"]
    assert json.loads(config_path("zero2").read_text())["zero_optimization"]["stage"] == 2
    one = launch_command("grpo", {**load_profile("gpu"), "num_gpus": 2})
    assert "--multi_gpu" in one and "--use_deepspeed" not in one
    s = sbatch_script("sft", full)
    assert "#SBATCH --nodes=4" in s and "#SBATCH --gpus-per-node=8" in s and "accelerate launch" in s
    with pytest.raises(ValueError, match="unknown stage"): launch_command("pretrain", full)

def test_unknown_override_is_an_error_and_only_declared_values_pass(project):
    r = cli("run", "--profile", "smoke", "--nbs", str(project / "nbs"), "-p", "n_per_taks=3")
    assert r.returncode == 2 and "n_per_taks" in r.stderr and "no selected notebook has such a parameter" in r.stderr
    (project / "settings.ini").write_text("[DEFAULT]\nx = 1\nunrelated = 1\n[smoke]\nx = 2\n")
    assert json.loads(cli("run", "--profile", "smoke", "--nbs", str(project / "nbs")).stdout)["00_core"] == "ran"
    (project / "settings.ini").write_text("[DEFAULT]\nx = 1\nunrelated = 2\n[smoke]\nx = 2\n")
    assert json.loads(cli("run", "--profile", "smoke", "--nbs", str(project / "nbs")).stdout)["00_core"] == "skipped"


def test_a_change_upstream_reruns_what_follows(project):
    "-p on the first notebook only: the second declares nothing changed but runs again; --only keeps order."
    nbs = str(project / "nbs")
    assert json.loads(cli("run", "--nbs", nbs).stdout) == {"00_core": "ran", "10_second": "ran"}
    r = cli("run", "--nbs", nbs, "-p", f"out={project / 'o.txt'}")       # only 00_core declares `out`
    assert json.loads(r.stdout) == {"00_core": "ran", "10_second": "ran"}
    r = cli("run", "--nbs", nbs, "-p", f"out={project / 'o.txt'}", "--only", "10", "0")
    assert list(json.loads(r.stdout)) == ["00_core", "10_second"]
    r = cli("run", "--nbs", nbs, "--from", "10", "--to", "0")
    assert r.returncode == 2 and "--from 10 comes after --to 0" in r.stderr


def test_a_deleted_run_directory_reruns_the_notebooks_using_it(project):
    nbs = project / "nbs"
    nb(nbs / "20_uses_runs.ipynb", "from pathlib import Path\n(Path(run_root) / 'smoke').mkdir(parents=True, exist_ok=True)",
       params="run_root = '../runs'")
    assert set(json.loads(cli("run", "--nbs", str(nbs)).stdout).values()) == {"ran"}
    assert (project / "runs/smoke").is_dir()
    assert set(json.loads(cli("run", "--nbs", str(nbs)).stdout).values()) == {"skipped"}
    (project / "runs/smoke").rmdir()
    assert json.loads(cli("run", "--nbs", str(nbs)).stdout) == {"00_core": "skipped", "10_second": "skipped", "20_uses_runs": "ran"}


def test_relative_paths_are_the_callers_and_nbs_dot_works(project):
    "-p paths relative to where `magicagent run` is typed, not to nbs/ where the kernels run; --nbs . from nbs/."
    (project / "here").mkdir(); (project / "here/model.txt").write_text("weights")
    nb(project / "nbs/20_runs.ipynb", "from pathlib import Path\nPath(run_root).mkdir()\nassert Path(model).read_text() == 'weights'",
       params="run_root = '../runs'\nmodel = 'tiny-random'")
    r = cli("run", "--nbs", "../nbs", "-p", "model=model.txt", "-p", "run_root=myruns", cwd=project / "here")
    assert r.returncode == 0, r.stderr
    params = json.loads((project / "papermill_runs/smoke/status.json").read_text())["params"]
    assert params["run_root"] == str(project / "here/myruns") and (project / "here/myruns").is_dir()
    assert params["model"] == str(project / "here/model.txt")
    r = cli("run", "--nbs", ".", "--only", "0", "--force", cwd=project / "nbs")
    assert r.returncode == 0 and (project / "papermill_runs/smoke/00_core.ipynb").exists()
    assert not (project / "nbs/papermill_runs").exists()


def test_a_dead_kernel_names_the_notebook(project):
    nb(project / "nbs/20_dies.ipynb", "import os\nos._exit(137)")
    r = cli("run", "--nbs", str(project / "nbs"))
    assert r.returncode == 1 and "notebook 20_dies.ipynb stopped: DeadKernelError" in r.stderr
    assert "Traceback" not in r.stderr and (project / "papermill_runs/smoke/20_dies.failed.ipynb").exists()


def test_yes_no_on_off_are_booleans_and_bad_profiles_are_errors(project):
    (project / "settings.ini").write_text("[DEFAULT]\nx = 1\na = no\nb = On\nc = yes\n[smoke]\nx = 2\n")
    v = load_profile("smoke", project / "settings.ini")
    assert (v["a"], v["b"], v["c"], v["x"]) == (False, True, True, 2)
    r = cli("run", "--profile", "smok", "--nbs", str(project / "nbs"))
    assert r.returncode == 2 and "unknown profile 'smok'" in r.stderr and not (project / "papermill_runs/smok").exists()
    r = cli("run", "--nbs", str(project / "nbs"), "-p", "profile=cpu")
    assert r.returncode == 2 and "--profile" in r.stderr
    r = cli("profiles", "smok"); assert r.returncode == 2 and "unknown profile" in r.stderr and "Traceback" not in r.stderr


def test_a_zmq_callback_error_is_one_line(capsys):
    "When a kernel dies, papermill's client may log a failed ZMQ callback with a traceback; `magicagent run` keeps it to one line."
    import logging
    from magicagent.pipeline import quiet_zmq_tracebacks
    log = logging.getLogger("tornado.general")
    h = logging.StreamHandler(sys.stderr); log.addHandler(h)
    try:
        quiet_zmq_tracebacks(); quiet_zmq_tracebacks()
        try: raise OSError("Socket operation on non-socket")
        except OSError: log.error("Uncaught exception in ZMQStream callback", exc_info=True)
        try: raise ValueError("other")
        except ValueError: log.error("something else", exc_info=True)
    finally: log.removeHandler(h)
    err = capsys.readouterr().err
    assert "Uncaught exception in ZMQStream callback\n" in err and err.count("Traceback") == 1 and "ValueError: other" in err
    assert sum(f is not None for f in log.filters) == 1


def test_results_are_copied_beside_the_record(project):
    nb(project / "nbs/30_writes.ipynb", "from pathlib import Path\nd = Path('../runs/smoke/results'); d.mkdir(parents=True, exist_ok=True)\n"
                                        "(d / 'table9.json').write_text('[{\"x\": %d}]' % x)")
    r = cli("run", "--nbs", str(project / "nbs"), "--only", "30")
    assert r.returncode == 0, r.stderr
    assert json.loads((project / "papermill_runs/smoke/results/table9.json").read_text()) == [{"x": 2}]


def test_records_show_portable_paths(tmp_path):
    import tempfile
    from magicagent.pipeline import portable_outputs
    root = tmp_path / "checkout"
    text = f"config {root}/magicagent/configs/ds_zero3.json, home {Path.home()}/.cache/x, temp {tempfile.gettempdir()}/tmpab12/f.jsonl"
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]},
                                                       {"output_type": "display_data", "data": {"text/markdown": text, "image/png": "iVBOR"}}]}]}
    out = portable_outputs(nb, root)["cells"][0]["outputs"]
    want = "config magicagent/configs/ds_zero3.json, home ~/.cache/x, temp $TMPDIR/tmpab12/f.jsonl"
    assert out[0]["text"] == [want] and out[1]["data"]["text/markdown"] == want and out[1]["data"]["image/png"] == "iVBOR"
