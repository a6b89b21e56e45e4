"SFT (§4.1): assistant-only labels, kill-and-resume with the same data order, LoRA, the CLI, Table 8 settings."
import json, os, signal, subprocess, sys, textwrap
from pathlib import Path
import pytest
import torch

from magicagent import sft, training
from magicagent.core import Sample, read_jsonl, write_jsonl
from magicagent.profiles import load_profile, config_path
from magicagent.pipeline import launch_command
from magicagent.synth.base import synthesize


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("sftdata")
    synthesize("orchestration", 14, d, seed=0, progress=False)
    recs = list(read_jsonl(d / "orchestration.jsonl", as_sample=True))
    # a multi-turn record with a tool turn: two assistant turns to train on, three turns not to
    recs.append(Sample(id="mt-1", task="long_horizon", messages=[
        {"role": "system", "content": "You call tools."}, {"role": "user", "content": "Find flights to Rome."},
        {"role": "assistant", "content": '<think>search</think>{"name": "search_flights", "arguments": {"to": "Rome"}}'},
        {"role": "tool", "content": '{"flights": ["AZ1"]}'},
        {"role": "assistant", "content": '<think>done</think>{"name": "reply", "arguments": {"content": "AZ1"}}'}]))
    write_jsonl(d / "train.jsonl", recs)
    # short distinct conversations for the kill-and-resume runs (every batch has its own tokens)
    cities = "Rome Paris Oslo Lima Cairo Delhi Tokyo Quito Bern Riga Sofia Doha Baku Male Suva Apia".split()
    write_jsonl(d / "short.jsonl", [Sample(id=f"s-{i}", task="orchestration", messages=[
        {"role": "user", "content": f"Plan a visit to {c}, trip {i}."},
        {"role": "assistant", "content": f"Node:\n1: Book a flight to {c}\n2: Book a hotel in {c}\nEdge: (START,1) (1,2) (2,END)"}])
        for i, c in enumerate(cities)])
    return d / "train.jsonl", recs


def smoke(**kw): return {**load_profile("smoke"), "model": "tiny-random", **kw}


def test_only_assistant_tokens_have_labels(data, tmp_path):
    _, recs = data
    tr = sft.build_sft_trainer(smoke(max_seq_length=4096), recs, tmp_path)
    rows = [tr.train_dataset[i] for i in range(len(recs))]
    batch = tr.data_collator(rows)
    tok = tr.processing_class
    for i, s in enumerate(recs):
        lab, ids = batch["labels"][i], batch["input_ids"][i]
        n = len(rows[i]["input_ids"])
        assert (lab[n:] == -100).all()                           # padding
        want = "".join(m["content"] + "<|im_end|>" for m in s.messages if m["role"] == "assistant")
        assert tok.decode(ids[lab != -100]) == want              # exactly the assistant turns, stop token included
        # every non-assistant token: the prompt prefix up to the first assistant content is unlabelled
        prefix = tok.apply_chat_template(s.messages[:[m["role"] for m in s.messages].index("assistant")],
                                         tokenize=False, add_generation_prompt=True)
        k = len(tok(prefix, add_special_tokens=False)["input_ids"])
        assert (lab[:k] == -100).all() and lab[k] != -100
    # the tool turn between the two assistant turns is masked
    i = len(recs) - 1
    assert "flights" not in tok.decode(batch["input_ids"][i][batch["labels"][i] != -100]).split("search_flights")[1]


def test_training_template_renders_identically(data):
    from magicagent.models import smollm2_tokenizer
    tok = smollm2_tokenizer()
    tt = sft.training_template(tok)
    assert "{% generation %}" in tt and tok.chat_template != tt
    for s in data[1]:
        for gp in (False, True):
            msgs = s.messages if not gp else s.prompt
            assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gp) == \
                   tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gp, chat_template=tt)


KILL = textwrap.dedent("""
    import json, os, signal, sys
    from transformers import TrainerCallback
    from magicagent import sft
    from magicagent.core import read_jsonl
    from magicagent.profiles import load_profile
    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == int(sys.argv[3]): os.kill(os.getpid(), signal.SIGKILL)
    v = {**load_profile("smoke"), "model": "tiny-random", "sft_max_steps": 8, "sft_save_steps": 2, "sft_batch_size": 2,
         "max_seq_length": 128, **json.loads(sys.argv[4])}
    sft.train_sft(v, list(read_jsonl(sys.argv[1], as_sample=True)), sys.argv[2], callbacks=[Kill()] if int(sys.argv[3]) else None)
""")


def _run(path, out, kill_at, **values):
    return subprocess.run([sys.executable, "-c", KILL, str(path), str(out), str(kill_at), json.dumps(values)],
                          capture_output=True, text=True, timeout=600)


def test_kill_and_resume(data, tmp_path):
    path = data[0].with_name("short.jsonl")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert _run(path, ref, 0).returncode == 0
    r = _run(path, cut, 5)
    assert r.returncode == -signal.SIGKILL                       # really killed, mid-run
    assert training.last_checkpoint(cut).endswith("checkpoint-4") and not (cut / "final").exists()
    assert len(sft.data_order(cut)) == 5                          # steps 0..4 ran, step 4 was not saved
    r = _run(path, cut, 0)
    assert r.returncode == 0, r.stderr[-2000:]
    m_ref, m_cut = (json.loads((d / "metrics.json").read_text()) for d in (ref, cut))
    assert m_cut["resumed_from"].endswith("checkpoint-4") and m_ref["resumed_from"] is None
    assert m_ref["global_step"] == m_cut["global_step"] == 8
    assert sft.data_order(ref) == sft.data_order(cut) and len(sft.data_order(ref)) == 8
    assert len(set(h for hs in sft.data_order(ref) for h in hs)) > 1   # the fingerprints do tell batches apart
    from safetensors.torch import load_file
    a, b = (load_file(d / "final" / "model.safetensors") for d in (ref, cut))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_kill_in_the_second_epoch_and_resume_grouped_by_length(data, tmp_path):
    "The cpu profile's sampling (group_by_length, 2 epochs): a kill in epoch 2 resumes to the same order and weights."
    path = data[0].with_name("short.jsonl")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    kw = dict(group_by_length=True, sft_epochs=2, sft_max_steps=-1)
    assert _run(path, ref, 0, **kw).returncode == 0
    assert _run(path, cut, 11, **kw).returncode == -signal.SIGKILL
    r = _run(path, cut, 0, **kw)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((cut / "metrics.json").read_text())["resumed_from"].endswith("checkpoint-10")
    assert sft.data_order(ref) == sft.data_order(cut) and len(sft.data_order(ref)) == 16
    assert sft.data_order(ref)[:8] != sft.data_order(ref)[8:]         # the second epoch is shuffled anew
    from safetensors.torch import load_file
    a, b = (load_file(d / "final" / "model.safetensors") for d in (ref, cut))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_is_merged_on_save(data, tmp_path):
    recs = list(read_jsonl(data[0].with_name("short.jsonl"), as_sample=True))[:4]
    m = sft.train_sft(smoke(lora=True, sft_max_steps=2, sft_lr=1e-2, max_seq_length=128), recs, tmp_path)
    assert m["global_step"] == 2 and not (tmp_path / "final" / "adapter_config.json").exists()
    from magicagent.models import load_causal_lm, build_tiny_random
    trained, (base, _) = load_causal_lm(str(tmp_path / "final")), build_tiny_random()
    sd, bd = trained.state_dict(), base.state_dict()
    assert not any("lora" in k for k in sd)
    changed = [k for k in bd if k in sd and not torch.equal(sd[k], bd[k])]
    assert changed and all("proj" in k for k in changed)         # LoRA touched the linear projections only


def test_cli_errors_and_runs(data, tmp_path):
    path, _ = data
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "sft", "--profile", "smoke", "--data", str(tmp_path / "nope.jsonl"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "nope.jsonl" in r.stderr
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "sft", "--profile", "smoke", "--data", str(path),
                        "--out", str(tmp_path / "o"), "--max-steps", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["global_step"] == 1


def test_full_profile_matches_table8(tmp_path):
    "Table 8 (SFT): the accelerate command, the DeepSpeed ZeRO-3 config and the SFTConfig, built but not run."
    from trl import SFTConfig
    v = load_profile("full")
    cmd = launch_command("sft", v)
    assert cmd[:2] == ["accelerate", "launch"]
    arg = lambda k: cmd[cmd.index(k) + 1]
    assert (arg("--num_processes"), arg("--num_machines"), arg("--mixed_precision")) == ("32", "4", "bf16")
    assert "--use_deepspeed" in cmd and Path(arg("--deepspeed_config_file")) == config_path("zero3")
    assert cmd[-5:] == ["-m", "magicagent.cli", "sft", "--profile", "full"]
    ds = json.loads(config_path("zero3").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] == "auto"
    assert ds["train_micro_batch_size_per_gpu"] == "auto"        # taken from the SFTConfig below
    kw = sft.sft_args(v, tmp_path)
    assert kw["deepspeed"] == str(config_path("zero3"))
    try:
        import deepspeed  # noqa: F401
    except ImportError: kw.pop("deepspeed")                      # the object itself needs the package
    c = SFTConfig(**kw)
    assert (c.learning_rate, c.lr_scheduler_type.value, c.bf16, c.weight_decay) == (1e-5, "cosine", True, 0.01)
    assert (c.adam_beta1, c.adam_beta2, c.num_train_epochs, c.max_steps) == (0.9, 0.95, 1, -1)
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps) == (4, 1)
    assert c.assistant_only_loss and c.max_length == 22528 and v["model"] == "Qwen/Qwen3-32B"


def test_too_long_samples_are_left_out_and_counted(data, tmp_path):
    recs = list(read_jsonl(data[0].with_name("short.jsonl"), as_sample=True))[:4]
    long = Sample(id="long-1", task="orchestration", messages=[{"role": "user", "content": "city " * 300},
                                                               {"role": "assistant", "content": "Node:\n1: go"}])
    tr = sft.build_sft_trainer(smoke(max_seq_length=128), recs + [long], tmp_path)
    assert tr.dropped_too_long == 1 and len(tr.train_dataset) == 4
    assert all(len(r["input_ids"]) <= 128 for r in tr.train_dataset)
    with pytest.raises(ValueError, match="longer than max_seq_length=128"):
        sft.build_sft_trainer(smoke(max_seq_length=128), [long], tmp_path / "x")


def test_mixed_precision_and_sampling_from_the_profile(data, tmp_path, monkeypatch):
    import magicagent.models as models
    native = models.fast_bf16()
    assert [sft.mixed_precision(load_profile(p)) for p in ("smoke", "cpu", "gpu", "full")] == ["no", "bf16" if native else "no", "bf16", "bf16"]
    assert sft.mixed_precision({"dtype": "float16"}) == "fp16" and sft.mixed_precision({"dtype": "float32", "mixed_precision": "bf16"}) == "bf16"
    with pytest.raises(ValueError, match="mixed_precision = 'bf17'"): sft.mixed_precision({"mixed_precision": "bf17"})
    cpu = load_profile("cpu")
    assert cpu["mixed_precision"] == "fast" and cpu["dtype"] == "float32"
    assert sft.sft_args(cpu, tmp_path)["bf16"] is native
    for has_bf16 in (True, False):      # a CPU with AVX512-BF16/AMX, and one without
        import magicagent.profiles as profiles
        for mod in (models, profiles): monkeypatch.setattr(mod, "fast_bf16", lambda device=None, v=has_bf16: v)
        kw = sft.sft_args(cpu, tmp_path)
        assert kw["bf16"] is has_bf16 and not kw["fp16"]           # fp32 weights, bf16 autocast only where native
        # `fast` is left to the stage, which resolves it where it trains and pins it over any accelerate setting
        assert "--mixed_precision" not in launch_command("sft", {**cpu, "num_gpus": 2})
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")     # a user's accelerate config, or a launcher elsewhere
        tr = sft.build_sft_trainer(smoke(mixed_precision="fast"), data[1][:2], tmp_path / str(has_bf16))
        assert tr.args.mixed_precision == ("bf16" if has_bf16 else "no") and not tr.args.fp16
    gpu = launch_command("sft", {**load_profile("gpu"), "num_gpus": 2})
    assert gpu[gpu.index("--mixed_precision") + 1] == "bf16"
    assert kw["train_sampling_strategy"] == "group_by_length" and kw["warmup_steps"] == 0.05
    assert sft.sft_args(smoke(), tmp_path)["train_sampling_strategy"] == "random"


def test_bf16_autocast_step_on_cpu(data, tmp_path):
    "One optimiser step with bf16 autocast and fp32 weights: the weights stay fp32 and change."
    recs = list(read_jsonl(data[0].with_name("short.jsonl"), as_sample=True))[:2]
    m = sft.train_sft(smoke(mixed_precision="bf16", sft_max_steps=1, sft_lr=1e-2, max_seq_length=128), recs, tmp_path)
    assert m["global_step"] == 1 and m["args"]["bf16"] is True and m["dropped_too_long"] == 0
    from safetensors.torch import load_file
    w = load_file(tmp_path / "final" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in w.values())


def test_profile_values_changed_in_a_notebook_reach_the_stage(data, tmp_path):
    "run_stage passes what differs from settings.ini as --set: the seed and learning rate a notebook chose train."
    from magicagent.pipeline import run_stage
    path, _ = data
    rc = run_stage("sft", {**load_profile("smoke"), "seed": 5, "sft_lr": 3e-4},
                   extra=["--data", str(path), "--out", str(tmp_path / "o"), "--max-steps", "1"])
    args = json.loads((tmp_path / "o/metrics.json").read_text())["args"]
    assert rc == 0 and (args["seed"], args["learning_rate"]) == (5, 3e-4)
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "sft", "--profile", "smoke", "--set", "sft_lrr=1",
                        "--data", str(path), "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--set sft_lrr: profile 'smoke' has no such value" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_a_checkpoint_cut_short_is_passed_over_and_a_finished_run_not_extended(data, tmp_path):
    path, recs = data
    out = tmp_path / "o"
    m1 = sft.train_sft(smoke(sft_max_steps=2, sft_save_steps=1), recs[:8], out)
    assert m1["global_step"] == 2 and training.last_checkpoint(out).endswith("checkpoint-2")
    m2 = sft.train_sft(smoke(sft_max_steps=2, sft_save_steps=1), recs[:8], out)      # the same run again
    assert m2["global_step"] == 2 and m2["train_loss"] == m1["train_loss"]
    assert not (out / "checkpoint-3").exists()
    (out / "checkpoint-2/trainer_state.json").unlink()                               # as if killed while saving
    assert training.last_checkpoint(out).endswith("checkpoint-1")


def test_weights_train_in_float32_under_autocast_without_deepspeed():
    gpu = load_profile("gpu")
    assert gpu["dtype"] == "bfloat16" and training.training_dtype(gpu) == "float32"         # bf16 autocast, fp32 weights
    assert training.training_dtype({**gpu, "deepspeed": "zero2"}) == "bfloat16"             # DeepSpeed keeps fp32 masters
    assert training.training_dtype({**gpu, "mixed_precision": "no"}) == "bfloat16"          # asked for pure bf16
    assert training.training_dtype(load_profile("smoke")) == "float32"


def test_checkpoints_resume_only_the_run_that_wrote_them(data, tmp_path):
    path, recs = data
    other = tmp_path / "other.jsonl"; write_jsonl(other, recs[2:10])
    out = tmp_path / "o"
    cmd = lambda data, *flags: subprocess.run([sys.executable, "-m", "magicagent.pipeline", "sft", "--profile", "smoke", "--data", str(data),
                                               "--out", str(out), "--max-steps", "2", "--save-steps", "1", *flags],
                                              capture_output=True, text=True, timeout=600)
    r = cmd(path); assert r.returncode == 0, r.stderr[-2000:]
    r = cmd(other)                                                   # other data, same --out: refused, nothing lost
    assert r.returncode == 2 and "another run (it differs in: data)" in r.stderr
    assert training.last_checkpoint(out).endswith("checkpoint-2") and (out / "final").is_dir()
    r = cmd(other, "--restart-if-changed")                           # the notebooks' mode: a changed run starts afresh
    assert r.returncode == 0 and "starting afresh" in r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1]); assert (m["resumed_from"], m["global_step"]) == (None, 2)
    r = cmd(other, "--restart-if-changed")                           # the same run again: resumed, nothing to train
    assert r.returncode == 0 and "nothing to train" in r.stderr
    (out / "checkpoint-7").mkdir(); (out / "checkpoint-7/trainer_state.json").write_text("{}")   # a stale checkpoint
    r = cmd(path, "--no-resume")
    assert r.returncode == 0 and sorted(d.name for d in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_a_bad_profile_value_names_its_key(data, tmp_path):
    path, _ = data
    r = subprocess.run([sys.executable, "-m", "magicagent.pipeline", "sft", "--profile", "smoke", "--set", "sft_lr=abc",
                        "--data", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--set sft_lr='abc': expected a number" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="profile value sft_lr is missing or empty"): sft.sft_args(smoke(sft_lr=None), tmp_path)
    assert sft.sft_args(smoke(sft_max_steps=None), tmp_path)["max_steps"] == -1        # empty: the default


def test_lengths_are_measured_with_the_template_trl_trains_with():
    "Qwen3's template drops earlier <think> blocks; TRL trains with its prefix-preserving one, so that is the one measured."
    import trl.chat_template_utils as ct
    from magicagent.models import smollm2_tokenizer
    from magicagent.models import chat_lengths
    tok = smollm2_tokenizer(); tok.chat_template = ct.qwen3_chat_template
    tt = sft.training_template(tok)
    assert tt == ct.qwen3_training_chat_template
    conv = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>" + "long reasoning " * 20 + "</think>x"},
                         {"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}]}
    plain = chat_lengths([conv], tok)[0]
    tok.chat_template = tt
    assert chat_lengths([conv], tok)[0] > plain + 40                 # the earlier reasoning is counted
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert sft.training_template(tok) is None                        # unknown to TRL: its trainer reports it
