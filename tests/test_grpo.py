"GRPO (§4.2.2): prompts, the profile's settings against Table 8, a short run with per-task reward logging, the CLI."
import json, subprocess, sys
from pathlib import Path
import pytest

from magicagent import grpo
from magicagent.core import Sample, read_jsonl, write_jsonl
from magicagent.profiles import load_profile, config_path
from magicagent.pipeline import launch_command
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
    assert cmd[-5:] == ["-m", "magicagent.cli", "grpo", "--profile", "full"]
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


def _rec(i, task, subtask=None):
    return Sample(id=f"{task}-{subtask}-{i}", task=task, subtask=subtask,
                  messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}])


def test_rl_records_balanced_disjoint_and_seeded():
    pool = [_rec(i, t, st) for t, st, n in (("decomposition", None, 7), ("scheduling", "trip", 4), ("scheduling", "calendar", 9))
            for i in range(n)]
    sft_ids = {pool[0].id, pool[7].id}
    got = grpo.rl_records(pool, exclude=sft_ids, per_group=3, seed=1)
    assert not sft_ids & {s.id for s in got}
    by = {}
    for s in got: by[(s.task, s.subtask)] = by.get((s.task, s.subtask), 0) + 1
    assert by == {("decomposition", None): 3, ("scheduling", "trip"): 3, ("scheduling", "calendar"): 3}
    assert [(s.task, s.subtask) for s in got[:3]] == [("decomposition", None), ("scheduling", "calendar"), ("scheduling", "trip")]
    assert [s.id for s in got] == [s.id for s in grpo.rl_records(list(reversed(pool)), exclude=sft_ids, per_group=3, seed=1)]
    assert [s.id for s in got] != [s.id for s in grpo.rl_records(pool, exclude=sft_ids, per_group=3, seed=2)]
    every = grpo.rl_records(pool, exclude=sft_ids)                 # per_group None: all of the rest
    assert len(every) == len(pool) - 2 and len({s.id for s in every}) == len(every)
    by_task = grpo.rl_records(pool, per_group=2, by_subtask=False)
    assert sorted(s.task for s in by_task) == ["decomposition"] * 2 + ["scheduling"] * 2


def test_grpo_records_sources(tmp_path):
    from magicagent.core import RunDir
    rd = RunDir("cpu", tmp_path)
    pool = [_rec(i, "orchestration") for i in range(6)] + [_rec(i, "scheduling", "meeting") for i in range(6)]
    write_jsonl(rd.stage("synth") / "orchestration.jsonl", pool[:6]); write_jsonl(rd.stage("synth") / "scheduling.jsonl", pool[6:])
    v = {"seed": 0, "grpo_by_subtask": True}
    # no selection yet: SFT trains on the whole pool, so nothing is left unseen
    with pytest.raises(ValueError, match="grpo_data = unselected"):
        grpo.grpo_records(rd, {**v, "grpo_data": "unselected"})
    write_jsonl(rd.stage("select") / "selected.jsonl", [pool[0], pool[6], pool[7]])
    recs, info = grpo.grpo_records(rd, {**v, "grpo_data": "unselected"})
    assert {s.id for s in recs} == {s.id for s in pool} - {pool[0].id, pool[6].id, pool[7].id}
    assert info["per_task"] == {"orchestration": 5, "scheduling": 4} and info["grpo_data"] == "unselected"
    recs, _ = grpo.grpo_records(rd, {**v, "grpo_data": "unselected", "grpo_prompts_per_group": 2})
    assert [s.task for s in recs] == ["orchestration", "scheduling"] * 2
    by_task, _ = grpo.grpo_records(rd, {"seed": 0, "grpo_data": "unselected", "grpo_prompts_per_group": 2})
    assert [s.task for s in by_task] == ["orchestration", "scheduling"] * 2      # the default balances over tasks
    recs, info = grpo.grpo_records(rd, {**v, "grpo_data": "selected"})
    assert [s.id for s in recs] == [pool[0].id, pool[6].id, pool[7].id] and info["prompts"] == 3
    with pytest.raises(ValueError, match="grpo_data"):
        grpo.grpo_records(rd, {**v, "grpo_data": "everything"})


def test_grpo_records_drops_what_sft_could_not_fit(tmp_path):
    from magicagent.core import RunDir
    from magicagent.models import build_tiny_random
    _, tok = build_tiny_random()
    rd = RunDir("cpu", tmp_path)
    pool = [_rec(i, "orchestration") for i in range(4)]
    pool[3].messages[0]["content"] = "word " * 400
    write_jsonl(rd.stage("synth") / "orchestration.jsonl", pool); write_jsonl(rd.stage("select") / "selected.jsonl", pool[:1])
    recs, info = grpo.grpo_records(rd, {"grpo_data": "unselected", "max_seq_length": 128}, tokenizer=tok)
    assert [s.id for s in recs] == [pool[1].id, pool[2].id] and info["too_long"] == {"orchestration": 1}


def test_loss_is_eq9_and_checkpointing_follows_the_profile(tmp_path):
    from magicagent.sft import sft_args
    for name in ("smoke", "cpu", "gpu", "full"):
        assert grpo.grpo_args(load_profile(name), tmp_path)["loss_type"] == "grpo"
    assert grpo.grpo_args({**load_profile("cpu"), "grpo_loss_type": "dapo"}, tmp_path)["loss_type"] == "dapo"
    assert [grpo.grpo_args(load_profile(n), tmp_path)["mask_truncated_completions"] for n in ("smoke", "cpu", "gpu", "full")] \
        == [False, False, False, False]
    assert grpo.grpo_args({**load_profile("cpu"), "grpo_mask_truncated": "yes"}, tmp_path)["mask_truncated_completions"] is True
    assert sft_args(load_profile("cpu"), tmp_path)["gradient_checkpointing"] is False
    assert grpo.grpo_args(load_profile("cpu"), tmp_path)["gradient_checkpointing"] is True    # its own key
    assert grpo.grpo_args({**load_profile("cpu"), "grpo_gradient_checkpointing": None}, tmp_path)["gradient_checkpointing"] is False
    for f in (grpo.grpo_args, sft_args):
        assert "gradient_checkpointing" not in f(load_profile("full"), tmp_path)      # TRL's default: on
        assert f({**load_profile("full"), "gradient_checkpointing": True}, tmp_path)["gradient_checkpointing"] is True



def test_sft_grpo_and_evaluation_show_the_same_tools(tmp_path):
    "Every tool of a record is named in the SFT conversation, the GRPO prompt and the evaluation prompt, in the same system text."
    from magicagent.sft import sft_rows
    for task in ("tool_planning", "decomposition", "long_horizon"):
        synthesize(task, 3, tmp_path, seed=0, progress=False)
        for s in read_jsonl(tmp_path / f"{task}.jsonl", as_sample=True):
            names = [t["function"]["name"] for t in s.tools]
            assert names, s.id
            sft_sys, rl_sys, eval_sys = sft_rows([s])[0]["messages"][0], grpo.rl_prompt(s)[0], s.prompt[0]
            assert sft_sys == rl_sys == eval_sys and sft_sys["role"] == "system"
            listed = [l.split("(")[0][2:] for l in sft_sys["content"].split("Available tools:\n")[1].splitlines()]
            assert listed == names, s.id
            assert grpo.rl_prompt(s)[1:] == s.prompt[1:] and s.prompt[1:] == [{"role": m["role"], "content": m["content"]} for m in s.messages[1:-1]]


def test_cli_tiny_random_start_and_data_without_static_tasks(data, tmp_path):
    d, recs = data
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "grpo", "--profile", "smoke", "--model", "tiny-random",
                        "--data", str(d / "train.jsonl"), "--out", str(tmp_path / "g"), "--max-steps", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["global_step"] == 1 and (tmp_path / "g/start/config.json").exists()
    online = Sample(id="o-1", task="online", messages=[{"role": "user", "content": "go"}])
    write_jsonl(tmp_path / "online.jsonl", [online])
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "grpo", "--profile", "smoke", "--model", str(d / "policy"),
                        "--data", str(tmp_path / "online.jsonl"), "--out", str(tmp_path / "g2")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "no record of a static task" in r.stderr and "online" in r.stderr
    assert not (tmp_path / "g2").exists()


def test_a_bad_gold_is_refused_before_training(data, tmp_path):
    d, recs = data
    bad = Sample(**{**recs[0].to_dict(), "id": "bad-1", "gold": {"nodes": ["x"]}}) if recs[0].task == "orchestration" else None
    assert bad is not None
    with pytest.raises(ValueError, match="sample bad-1: orchestration gold needs `nodes` and `edges`"): grpo.rl_rows([recs[1], bad])
    write_jsonl(tmp_path / "bad.jsonl", [bad])
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "grpo", "--profile", "smoke", "--model", str(d / "policy"),
                        "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "g")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "sample bad-1" in r.stderr and "Traceback" not in r.stderr


def test_prompts_longer_than_max_prompt_length_are_left_out_and_counted(data, tmp_path):
    d, recs = data
    from magicagent.models import load_tokenizer
    tok = load_tokenizer(str(d / "policy"))
    lens = {s.id: len(tok.apply_chat_template(grpo.rl_prompt(s), tokenize=True, add_generation_prompt=True)["input_ids"]) for s in recs}
    cut = sorted(lens.values())[len(lens) // 2]
    kept, dropped = grpo.drop_long_prompts(recs, cut, tok)
    assert {s.id for s in kept} == {i for i, n in lens.items() if n <= cut} and sum(dropped.values()) == len(recs) - len(kept) > 0
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "grpo", "--profile", "smoke", "--model", str(d / "policy"),
                        "--data", str(d / "train.jsonl"), "--out", str(tmp_path / "g"), "--max-steps", "1", "--set", f"max_prompt_length={cut}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])["data"]
    assert info["prompt_too_long"] == dropped and info["prompts"] == len(kept)
