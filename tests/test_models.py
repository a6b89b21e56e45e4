"Real local models, offline: SmolLM2-135M through transformers and through a real OpenAI-compatible server."
import os, re, subprocess, sys, time
import numpy as np
import pytest
from magicagent.models import (build_tiny_random, get_generator, load_causal_lm, load_tokenizer, smollm2_path,
                               embed, resolve_model, OpenAIGenerator)

MSG = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}]]

@pytest.fixture(scope="module")
def smol():
    return get_generator("smollm2-135m", batch_size=2)

def test_smollm2_converted_offline_and_trainable():
    p = smollm2_path()
    assert (p / "model.safetensors").exists() and (p / "config.json").exists()
    m = load_causal_lm("smollm2-135m")
    assert getattr(m, "hf_quantizer", None) is None            # a plain model, not flagged as quantised
    assert sum(x.numel() for x in m.parameters()) > 130e6
    assert all(x.requires_grad for x in m.parameters())

def test_smollm2_generates_through_transformers(smol):
    out = smol.generate(MSG, max_new_tokens=12)
    assert len(out) == 1 and len(out[0]) == 1
    assert "paris" in out[0][0].lower()

def test_smollm2_batched_matches_single(smol):
    convs = MSG + [[{"role": "user", "content": "Name a color."}]]
    batched = smol.generate(convs, max_new_tokens=8)
    single = [smol.generate([c], max_new_tokens=8)[0] for c in convs]
    assert batched[0] == single[0]

def test_openai_backend_against_real_local_server(smol):
    proc = subprocess.Popen([sys.executable, "-m", "magicagent.pipeline", "serve", "--model", "smollm2-135m", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert m, f"server did not start: {line!r}"
        client = get_generator("smollm2-135m", backend="openai", base_url=f"http://127.0.0.1:{m.group(1)}/v1")
        assert isinstance(client, OpenAIGenerator)
        remote = client.generate(MSG, max_new_tokens=12)
        assert remote == smol.generate(MSG, max_new_tokens=12)        # greedy: the same text locally and remotely
        two = client.generate(MSG, n=2, temperature=1.0, max_new_tokens=6, seed=1)
        assert len(two[0]) == 2
        with pytest.raises(RuntimeError, match="HTTP 400"):
            client._post({"model": "smollm2-135m", "messages": []})
    finally:
        proc.terminate(); proc.wait(10)

def test_tiny_random_builds_and_generates():
    m, tok = build_tiny_random()
    assert sum(x.numel() for x in m.parameters()) < 5e6
    g = get_generator("tiny-random", model=m, tokenizer=tok)
    out = g.generate(MSG * 3, n=2, temperature=1.0, max_new_tokens=5)
    assert [len(o) for o in out] == [2, 2, 2]

def test_minilm_embeddings_offline():
    e = embed(["schedule a meeting", "arrange a meeting", "grow tomatoes"])
    assert e.shape == (3, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]

def test_clear_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(FileNotFoundError, match="does not exist"): resolve_model("/no/such/dir")
    with pytest.raises(ValueError, match="base_url"): get_generator("x", backend="openai")
    with pytest.raises(ValueError, match="built, not loaded"): resolve_model("tiny-random")


def test_fast_dtype_is_bf16_only_where_native(monkeypatch):
    import torch
    import magicagent.models as models
    cpu_native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert models.fast_bf16("cpu") is cpu_native                       # this machine's real answer
    assert models.resolve_dtype("fast", "cpu") == ("bfloat16" if cpu_native else "float32")
    assert models.resolve_dtype("float16") == "float16" and models.resolve_dtype(None) is None
    for native in (True, False):
        monkeypatch.setattr(models, "fast_bf16", lambda device=None, v=native: v)
        m = load_causal_lm("tiny-random", dtype="fast")
        assert m.dtype == (torch.bfloat16 if native else torch.float32)


def test_dtype_names_checked_and_auto_loads():
    import torch
    from magicagent.models import resolve_dtype
    assert [resolve_dtype(x) for x in ("bf16", "FP16", "fp32", "auto")] == ["bfloat16", "float16", "float32", "auto"]
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match=r"dtype 'bfloat': expected one of .*bfloat16"): resolve_dtype("bfloat")
    with pytest.raises(ValueError, match="dtype 'int8'"): load_causal_lm("tiny-random", dtype="int8")
    assert load_causal_lm("tiny-random", dtype="auto").dtype == torch.float32
    assert load_causal_lm("tiny-random", dtype="bf16").dtype == torch.bfloat16


def test_fast_is_float32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    # no GPU here: torch.cuda is stood in for, as on a pre-Ampere card (emulated bf16 only)
    import contextlib, torch
    import magicagent.models as models
    from magicagent.profiles import mixed_precision
    asked = []
    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation); return including_emulation
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert models.fast_bf16() is False and asked == [False]
    assert models.resolve_dtype("fast") == "float32"
    assert mixed_precision({"mixed_precision": "fast"}) == "no"
