import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import json, subprocess, sys
import pytest


@pytest.fixture
def same_bytes_one_and_two_workers(tmp_path):
    "Synthesize `n` samples of `task` in-process with one worker and through the CLI with two; assert the same bytes."
    def check(task:str, n:int, seed:int):
        from magicagent.synth.base import synthesize
        m = synthesize(task, n, tmp_path / "w1", seed=seed, workers=1, progress=False)
        assert m["accepted"] == n
        r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "synth", "--task", task, "--n", str(n), "--seed", str(seed),
                            "--out", str(tmp_path / "w2"), "--workers", "2", "--no-progress"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads((tmp_path / "w2" / "manifest.json").read_text())[task]["accepted"] == n
        a, b = (tmp_path / "w1" / f"{task}.jsonl").read_bytes(), (tmp_path / "w2" / f"{task}.jsonl").read_bytes()
        assert a == b and a.count(b"\n") == n
    return check
