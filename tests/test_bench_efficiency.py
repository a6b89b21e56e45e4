"Table 7's measurement, small: EvalScope's perf tool against a real local streaming server (`transformers serve`) of a tiny model."
import json, urllib.request
from pathlib import Path
import pytest
from magicagent.bench.efficiency import tool_env, StreamingServer, measure_efficiency, read_perf, perf_command

@pytest.fixture(scope="module")
def tools():
    try: return tool_env()
    except RuntimeError as e: pytest.skip(f"the benchmark tool environment cannot be installed here: {e}")

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from magicagent.models import build_tiny_random
    d = tmp_path_factory.mktemp("tiny")
    model, tok = build_tiny_random(); model.save_pretrained(d); tok.save_pretrained(d)
    return d

def test_server_streams(tools, tiny_dir, tmp_path):
    with StreamingServer(tiny_dir, tools, log=tmp_path / "server.log") as srv:
        body = {"model": str(tiny_dir), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
        req = urllib.request.Request(srv.base_url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r: chunks = [l for l in r.read().decode().splitlines() if l.startswith("data: ")]
    assert len(chunks) >= 2                               # streamed: several server-sent events
    assert srv.proc.poll() is not None                    # stopped at the end of the block

def test_measure_efficiency_small(tools, tiny_dir, tmp_path):
    rows = measure_efficiency(str(tiny_dir), tmp_path, concurrency=(1, 2), input_tokens=64, output_tokens=4, requests_per_level=1)
    assert [r["concurrency"] for r in rows] == [1, 2] and [r["requests"] for r in rows] == [1, 2]
    for r in rows:
        assert r["failed"] == 0 and r["ttft_s"] > 0 and r["latency_s"] >= r["ttft_s"] and 1 <= r["output_tokens"] <= 4
    assert json.loads((tmp_path / "efficiency.json").read_text()) == rows

def test_perf_command_and_reader(tmp_path):
    cmd = perf_command("/v/bin/python", "http://h:1/v1", "m", "/tok", [1, 10], 1024, 1024, 2, tmp_path)
    assert cmd[0] == "/v/bin/evalscope" and cmd[cmd.index("--number") + 1: cmd.index("--number") + 3] == ["2", "20"]
    assert cmd[cmd.index("--url") + 1] == "http://h:1/v1/chat/completions" and "--stream" in cmd
    with pytest.raises(FileNotFoundError, match="benchmark_summary.json"): read_perf(tmp_path)
