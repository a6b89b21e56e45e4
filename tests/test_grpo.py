"GRPO (§4.2.2): prompts, the profile's settings against Table 8, a short run with per-task reward logging, the CLI."
import json, subprocess, sys
from pathlib import Path
import pytest

from magicagent import grpo
from magicagent.core import Sample, read_jsonl, write_jsonl
from magicagent.pipeline import load_profile, launch_command, config_path
from magicagent.synth.base import synthesize


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpodata")
    synthesize("orchestration", 2, d, seed=0, progress=False)
    synthesize("scheduling", 2, d, seed=0, progress=False)
    recs = [s for t in ("orchestration", "scheduling") for s in read_jsonl(d / f"{t}.jsonl", as_sample=True)]
    from magicagent.models import build_tiny_random
    m, tok = build_tiny_random(); m.save_pretrained(d / "policy"); tok.save_pretrained(d / "policy")
    write_jsonl(d / "train.jsonl", recs)
    return d, recs


def test_rl_rows(data):
    _, recs = data
    rows = grpo.rl_rows(recs)
    for r, s in zip(rows, recs):
        assert r["prompt"] == [{"role": m["role"], "content": m["content"]} for m in s.messages[:-1]]   # generator's own system prompt kept
        assert r["prompt"][0]["role"] == "system" and r["prompt"][-1]["role"] == "user"
        assert json.loads(r["gold"]) == s.gold and r["task"] == s.task
    bare = Sample(id="b-1", task="scheduling", messages=[{"role": "user", "content": "Meet Ana."}, {"role": "assistant", "content": "x"}])
    assert grpo.rl_prompt(bare)[0] == {"role": "system", "content": grpo.TASK_PROMPTS["scheduling"]}
    assert len({p for p in grpo.TASK_PROMPTS.values()}) == 5      # one distinct prompt per task
    with pytest.raises(ValueError, match="b-2"):
        grpo.rl_rows([Sample(id="b-2", task="online", messages=[{"role": "user", "content": "go"}])])


def test_full_profile_matches_table8(tmp_path):
    "Table 8 (RL): the accelerate command, ZeRO-3 and the GRPOConfig, built but not run."
    from trl import GRPOConfig
    v = load_profile("full")
    cmd = launch_command("grpo", v)
    arg = lambda k: cmd[cmd.index(k) + 1]
    assert (arg("--num_processes"), arg("--num_machines"), arg("--mixed_precision")) == ("32", "4", "bf16")
    assert "--use_deepspeed" in cmd and Path(arg("--deepspeed_config_file")) == config_path("zero3")
    assert cmd[-5:] == ["-m", "magicagent.pipeline", "grpo", "--profile", "full"]
    kw = grpo.grpo_args(v, tmp_path)
    assert kw["deepspeed"] == str(config_path("zero3"))
    try:
        import deepspeed  # noqa: F401
    except ImportError: kw.pop("deepspeed")
    try:
        import vllm  # noqa: F401
    except ImportError: kw["use_vllm"] = False                   # the object checks that vLLM is importable
    c = GRPOConfig(**kw)
    assert grpo.grpo_args(v, tmp_path)["use_vllm"] is True
    assert (c.learning_rate, c.num_generations, c.temperature, c.top_p, c.top_k) == (1e-6, 8, 0.9, 0.96, 20)
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps, c.bf16) == (1, 1, True)
    assert (c.weight_decay, c.adam_beta1, c.adam_beta2, c.lr_scheduler_type.value) == (0.01, 0.9, 0.95, "cosine")
    assert c.beta > 0 and c.reward_weights == [1.0] and c.max_completion_length == 2048
    assert c.generation_batch_size == 32 and c.generation_batch_size % c.num_generations == 0   # 32 GPUs x 1 = 4 prompts x 8


def test_smoke_profile_config_is_valid(tmp_path):
    from trl import GRPOConfig
    for name in ("smoke", "cpu", "gpu"):
        v = load_profile(name)
        c = GRPOConfig(**{**grpo.grpo_args(v, tmp_path), "use_vllm": False})
        assert c.generation_batch_size % c.num_generations == 0 and c.beta == v["grpo_beta"] > 0


def test_one_step_logs_rewards_per_task(data, tmp_path):
    d, recs = data
    v = {**load_profile("smoke"), "grpo_max_steps": 1, "grpo_batch_size": 8, "grpo_num_generations": 2, "max_new_tokens": 8}
    m = grpo.train_grpo(v, recs, tmp_path / "g", str(d / "policy"))   # 8 completions = all 4 prompts x 2 in one step
    assert m["global_step"] == 1 and (tmp_path / "g" / "final" / "config.json").exists()
    cur = m["curves"]
    assert {"reward", "kl"} <= set(cur)
    for t in ("orchestration", "scheduling"):
        for c in ("format", "content"):
            assert f"reward/{t}/{c}" in cur and 0.0 <= cur[f"reward/{t}/{c}"][0][1] <= 1.0
    saved = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert saved["args"]["num_generations"] == 2 and saved["args"]["beta"] == 0.04


def test_cli_needs_an_sft_policy(tmp_path):
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "grpo", "--profile", "smoke", "--run-root", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no SFT policy" in r.stderr
