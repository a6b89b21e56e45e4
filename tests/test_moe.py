"MoE balance terms (§5): hand-made tensors, the two-process global batch, the step buffer, the trainer, the stage and its full-scale launch."
import json, math, os, subprocess, sys
from contextlib import nullcontext
from pathlib import Path
import pytest
import torch

from magicagent.moe_losses import (RouterStats, LOSSES, VARIANTS, balance_loss, expert_counts, micro_batch_balance,
                                   sequence_balance, global_batch_balance, router_z_loss, variance_loss, max_violation,
                                   capacity_keep, task_expert_mi, variant_terms)

ROOT = Path(__file__).resolve().parents[1]


def _stats(T=12, E=6, k=2, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(T, E, generator=g)
    return RouterStats(logits, logits.topk(k, dim=-1).indices)


# ---- the terms on hand-made tensors -------------------------------------------------------------------------------

def test_micro_batch_balance_is_hugging_faces_loss_over_k():
    "One layer, no padding: Hugging Face's Qwen3-MoE loss (f summing to k) is k times ours (f summing to 1)."
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func
    for seed in range(3):
        s = _stats(seed=seed)
        hf = load_balancing_loss_func((s.logits,), num_experts=s.n_experts, top_k=s.k)
        assert torch.allclose(hf, s.k * micro_batch_balance(s), atol=1e-6)


def test_balance_values_at_the_extremes():
    E = 4
    uniform = RouterStats(torch.zeros(8, E), torch.arange(8).remainder(E)[:, None])
    assert math.isclose(float(micro_batch_balance(uniform)), 1.0, abs_tol=1e-6)
    collapsed = RouterStats(torch.tensor([[20., 0, 0, 0]] * 8), torch.zeros(8, 1, dtype=torch.long))
    assert math.isclose(float(micro_batch_balance(collapsed)), E, rel_tol=1e-5)
    assert math.isclose(float(balance_loss(torch.tensor([.25] * 4), torch.tensor([.25] * 4))), 1.0)


def test_sequence_balance_averages_per_sequence():
    s = _stats(T=10)
    one = RouterStats(s.logits, s.topk, seq=torch.zeros(10, dtype=torch.long))
    assert torch.allclose(sequence_balance(one), micro_batch_balance(s))                    # one sequence: the micro-batch loss
    seq = torch.tensor([0] * 4 + [1] * 6)
    parts = [micro_batch_balance(RouterStats(s.logits[seq == i], s.topk[seq == i])) for i in (0, 1)]
    assert torch.allclose(sequence_balance(RouterStats(s.logits, s.topk, seq=seq)), (parts[0] + parts[1]) / 2)


def test_global_balance_is_the_micro_batch_loss_of_the_whole_batch():
    s = _stats(T=9)
    g = RouterStats(s.logits, s.topk, global_counts=expert_counts(s.topk, s.n_experts), global_tokens=9.0)
    assert torch.allclose(global_batch_balance(g), micro_batch_balance(s))
    with pytest.raises(ValueError, match="global_counts"): global_batch_balance(s)


def test_z_and_variance_losses():
    logits = torch.tensor([[1., 2., 3.], [0., 0., 0.]])
    s = RouterStats(logits, logits.argmax(-1, keepdim=True))
    want = (torch.logsumexp(logits[0], 0) ** 2 + math.log(3) ** 2) / 2
    assert math.isclose(float(router_z_loss(s)), float(want), rel_tol=1e-6)
    imp = logits.softmax(-1).sum(0)
    assert math.isclose(float(variance_loss(s)), float(imp.var(unbiased=False) / imp.mean() ** 2), rel_tol=1e-6)
    assert float(variance_loss(RouterStats(torch.zeros(5, 3), torch.zeros(5, 1, dtype=torch.long)))) == pytest.approx(0.0, abs=1e-9)


def test_every_term_differentiates_the_logits():
    s = _stats(T=8)
    logits = s.logits.clone().requires_grad_()
    for name, fn in LOSSES.items():
        st = RouterStats(logits, s.topk, seq=torch.tensor([0] * 3 + [1] * 5), global_counts=expert_counts(s.topk, 6), global_tokens=8.0)
        g, = torch.autograd.grad(fn(st), logits)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name


@pytest.mark.parametrize("seed", range(5))
def test_capacity_keeps_the_most_probable_slots_within_capacity(seed):
    g = torch.Generator().manual_seed(seed)
    T, E, k, cf = 40, 5, 2, 1.0
    probs = (3 * torch.randn(T, E, generator=g)).softmax(-1)
    topk = probs.topk(k, dim=-1).indices
    valid = torch.rand(T, generator=g) > 0.2
    keep = capacity_keep(probs, topk, cf, valid)
    cap = math.ceil(cf * int(valid.sum()) * k / E)
    assert not keep[~valid].any()
    for e in range(E):
        mine = (topk == e) & valid[:, None]
        kept, dropped = probs[:, e][(keep & mine).any(-1)], probs[:, e][(mine & ~keep).any(-1)]
        assert len(kept) == min(cap, int(mine.sum()))
        if len(dropped): assert kept.min() >= dropped.max()                    # the lowest probabilities go first


def test_max_violation_and_mutual_information():
    assert float(max_violation(torch.tensor([3., 1., 1., 3.]))) == 0.5
    assert max_violation(torch.tensor([[2., 2.], [4., 0.]])).tolist() == [0.0, 1.0]
    assert task_expert_mi(torch.tensor([[3., 3., 3.], [1., 1., 1.]])) == pytest.approx(0.0, abs=1e-7)
    assert task_expert_mi(torch.tensor([[4., 0., 0.], [0., 4., 0.], [0., 0., 4.]])) == pytest.approx(math.log2(3))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        c = torch.randint(0, 9, (3, 8), generator=g).float() + 1
        assert 0 <= task_expert_mi(c) <= math.log2(3) + 1e-9


def test_variants_name_registered_terms():
    assert set(VARIANTS) == {"none", "micro", "sequence", "global", "z_loss", "variance", "capacity", "global_z"}
    assert variant_terms("capacity") == ((), True)
    with pytest.raises(ValueError, match="unknown MoE variant 'zloss'"): variant_terms("zloss")


# ---- global means global: two processes ---------------------------------------------------------------------------

def _two_rank_worker(out:str):
    "Run under torchrun with 2 processes: DDP over a router, the global term over two micro-batches of unequal real tokens."
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from magicagent.moe import BalanceState
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    H, E, k = 5, 6, 2
    torch.manual_seed(0)
    router = torch.nn.Linear(H, E, bias=False)
    ref = torch.nn.Linear(H, E, bias=False); ref.load_state_dict(router.state_dict())
    real = {0: [7, 4], 1: [13, 9]}                      # real tokens of each rank's two micro-batches
    pad = {0: 10, 1: 16}                                # padded length on each rank
    gen = torch.Generator().manual_seed(1)
    data = {r: [(torch.randn(pad[r], H, generator=gen), torch.arange(pad[r]) < n) for n in real[r]] for r in range(world)}
    ddp, state = DDP(router), BalanceState("global", alpha=1.0, beta=0.0)
    for j in range(2):                                  # gradient accumulation over two micro-batches
        x, valid = data[rank][j]
        logits = ddp(x)
        topk = logits.detach().softmax(-1).topk(k, dim=-1).indices
        loss = state.loss([(logits[valid], topk[valid], None)]) / 2
        with ddp.no_sync() if j == 0 else nullcontext(): loss.backward()
    # one process on the concatenated batches, the same functions with one rank
    total, cum = 0.0, torch.zeros(E)
    for j in range(2):
        x = torch.cat([data[r][j][0][data[r][j][1]] for r in range(world)])
        logits = ref(x); topk = logits.detach().softmax(-1).topk(k, dim=-1).indices
        cum = cum + expert_counts(topk, E)
        total = total + global_batch_balance(RouterStats(logits, topk, global_counts=cum, global_tokens=float(len(x)))) / 2
    total.backward()
    if rank == 0:
        Path(out).write_text(json.dumps({"counts": state.global_counts[0].tolist(), "single_counts": cum.tolist(),
                                         "grad_diff": float((router.weight.grad - ref.weight.grad).abs().max()),
                                         "grad_norm": float(ref.weight.grad.norm())}))
    dist.destroy_process_group()


def test_global_balance_across_two_processes_equals_one_process(tmp_path):
    "Two gloo ranks holding 11 and 22 real tokens: all-reduced counts and the DDP-averaged gradient equal one process's on the concatenated batch."
    out = tmp_path / "two_ranks.json"
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    # loopback only: gloo otherwise resolves the host name to pick its interface
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(port), __file__, str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["counts"] == res["single_counts"] and sum(res["counts"]) == (7 + 4 + 13 + 9) * 2
    assert res["grad_norm"] > 1e-3 and res["grad_diff"] < 1e-5


# ---- the step buffer and the trainer --------------------------------------------------------------------------------

def test_step_buffer_accumulates_micro_batches_and_resets_at_the_optimiser_step():
    from magicagent.moe import BalanceState
    st = BalanceState("global_z", alpha=1.0, beta=0.5)
    a = [(torch.tensor([[2., 0, 0]] * 3), torch.zeros(3, 1, dtype=torch.long), None)] * 2     # two layers
    b = [(torch.tensor([[0., 0, 2]] * 3), torch.full((3, 1), 2), None)] * 2
    st.loss(a); st.loss(b)
    assert st.global_counts.tolist() == [[3., 0., 3.]] * 2 and st.step_counts.tolist() == [[3., 0., 3.]] * 2
    rec = st.end_step(7)
    assert rec["step"] == 7 and rec["maxvio"] == pytest.approx(0.5) and set(rec) >= {"global", "z", "maxvio_layers"}
    assert st.global_counts is None and st.step_counts is None and st.micro_batches == 0
    st.loss(b)
    assert st.global_counts.tolist() == [[0., 0., 3.]] * 2                                     # counted afresh
    assert st.end_step(8)["maxvio"] == pytest.approx(2.0)
    assert BalanceState("none", 1.0, 1.0).loss(a) == 0


def _samples(n=4):
    from magicagent.synth.base import iter_samples
    return [s for t in ("orchestration", "decomposition") for s in iter_samples(t, n, seed=3, progress=False)]


def _trainer(tmp_path, variant, **kw):
    from magicagent.moe import MoESFTTrainer, RoutingLog, balance_state, build_tiny_moe, moe_args
    from magicagent.profiles import load_profile
    from magicagent.sft import build_sft_trainer
    values = {**load_profile("smoke"), "max_seq_length": 1024}
    samples = _samples()
    log = RoutingLog(balance_state(values, variant), [s.task for s in samples])
    (tmp_path / variant).mkdir(parents=True, exist_ok=True)
    tr = build_sft_trainer(values, samples, tmp_path / variant, "tiny-moe", [log, *kw.pop("callbacks", [])], trainer_cls=MoESFTTrainer,
                           model=build_tiny_moe(0), **{**moe_args(values, variant), "save_strategy": "no", **kw})
    return tr, log


def _router_grads_of_one_step(tmp_path, variant):
    "Train one optimiser step through `Trainer.train` (which switches checkpointing on as configured); the routers' gradients."
    from transformers import TrainerCallback
    from magicagent.moe import routers
    grads = []
    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            grads.extend(r.weight.grad.clone() for r in routers(model))
            self.checkpointing = model.is_activation_checkpointing
    grab = Grab()
    tr, _ = _trainer(tmp_path, variant, activation_checkpointing=True, max_steps=1, callbacks=[grab])
    tr.train()
    return tr, grads, grab.checkpointing


def test_router_gets_the_balance_gradient_under_the_stacks_checkpointing(tmp_path):
    "Gradient checkpointing on, as moe_args asks for it (non-reentrant): the z-loss changes the router's gradient."
    base, g0, on = _router_grads_of_one_step(tmp_path, "none")
    z, g1, _ = _router_grads_of_one_step(tmp_path, "z_loss")
    assert on and z.args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert len(g0) == len(g1) == 2 and all((a - b).abs().max() > 1e-6 for a, b in zip(g0, g1))


def test_moe_trainer_loss_is_trls_sft_loss(tmp_path):
    "The MoE trainer's loss without terms is what TRL's SFTTrainer computes on the same batch (TRL's fused head skipped)."
    from trl import SFTTrainer
    tr, _ = _trainer(tmp_path, "none")
    batch = next(iter(tr.get_train_dataloader()))
    tr.model.eval()
    with torch.no_grad():
        ours = tr.compute_loss(tr.model, dict(batch))
        trls = SFTTrainer.compute_loss(tr, tr.model, dict(batch))
    assert torch.allclose(ours, trls, atol=1e-4), (ours, trls)


def test_single_task_micro_batches_from_the_trainer(tmp_path):
    from magicagent.moe import SingleTaskSampler
    tr, log = _trainer(tmp_path, "micro")
    sampler = tr._get_train_sampler()
    assert isinstance(sampler, SingleTaskSampler)
    for b in sampler.batches(): assert len({log.tasks[i] for i in b}) == 1
    rows = [tr.train_dataset[i]["input_ids"] for i in list(sampler)[:2]]     # the dataset rows are the samples, in order
    assert len(tr.train_dataset) == len(log.tasks) and all(len(r) > 0 for r in rows)


def test_train_moe_logs_maxvio_per_step_and_evaluates_routing(tmp_path):
    from magicagent.moe import train_moe, by_task
    from magicagent.profiles import load_profile
    values = {**load_profile("smoke"), "moe_grad_accum": 2, "moe_max_steps": 2, "max_seq_length": 1024}
    samples = _samples(4)
    m = train_moe(values, samples, tmp_path / "global_z-seed0", "global_z", by_task(_samples(1)))
    steps = [r for r in m["log_history"] if "moe_maxvio" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(0 <= r["moe_maxvio"] <= 3 for r in steps)
    assert all("moe_global" in r and "moe_z" in r for r in steps)
    h = m["heldout"]
    assert set(h["tasks"]) == {"orchestration", "decomposition"} and len(h["mi_layers"]) == 2 and h["heldout_loss"] > 0
    assert json.loads((tmp_path / "global_z-seed0" / "heldout.json").read_text())["mi_bits"] == h["mi_bits"]
    # a finished run is recognised, not trained again; its held-out result is reused
    again = train_moe(values, samples, tmp_path / "global_z-seed0", "global_z", by_task(_samples(1)))
    assert again["global_step"] == 2 and again["heldout"] == h
    # another variant in the same directory is another run
    with pytest.raises(ValueError, match="another run"):
        train_moe(values, samples, tmp_path / "global_z-seed0", "micro")


def test_capacity_variant_drops_slots_in_training_only():
    from magicagent.moe import RouterCapture, build_tiny_moe, routers
    m, tok = build_tiny_moe(0)
    x = tok(["a sentence long enough to overflow an expert or two"], return_tensors="pt")
    seen = []
    cap = RouterCapture(m, capacity_factor=0.5)                                  # half the slots fit
    h = routers(m)[0].register_forward_hook(lambda mod, a, out: seen.append(out[1].detach().clone()))   # after the capacity hook
    m.train(); m(**x); m.eval(); m(**x)
    trained, evaluated = seen
    assert (trained == 0).sum() >= trained.numel() // 2 - 8 and (evaluated == 0).sum() == 0
    h.remove(); cap.remove()


# ---- the command and the full-scale launch -------------------------------------------------------------------------

def test_moe_command_errors_are_one_line(capsys):
    from magicagent.moe import moe_main
    assert moe_main(["--profile", "smoke", "--variant", "global-z"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'global-z'" in err[0]
    assert moe_main(["--profile", "smoke", "--set", "moe_lr=fast"]) == 2
    assert "moe_lr" in capsys.readouterr().err


def test_full_profile_moe_launch_and_deepspeed_config_dry_run(tmp_path):
    "Table 8 (MoE): the accelerate command, the ZeRO-3 config and the SFTConfig of the MoE stage, built and checked, not run."
    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from trl import SFTConfig
    from magicagent.moe import moe_args
    from magicagent.pipeline import launch_command
    from magicagent.profiles import config_path, load_profile
    from magicagent.sft import sft_args
    v = load_profile("full")
    assert not any(k in v for k in ("tensor_parallel", "pipeline_parallel", "context_parallel", "expert_parallel"))
    cmd = launch_command("moe", v)
    arg = lambda k: cmd[cmd.index(k) + 1]
    assert (arg("--num_processes"), arg("--num_machines"), arg("--mixed_precision")) == ("32", "4", "bf16")
    assert cmd[cmd.index("-m") + 2:] == ["moe", "--profile", "full"]          # the stage command under accelerate
    ds = HfDeepSpeedConfig(arg("--deepspeed_config_file"))
    assert ds.is_zero3() and Path(arg("--deepspeed_config_file")) == config_path("zero3")
    raw = json.loads(config_path("zero3").read_text())
    assert raw["train_micro_batch_size_per_gpu"] == raw["gradient_accumulation_steps"] == raw["bf16"]["enabled"] == "auto"
    kw = sft_args(v, tmp_path, **moe_args(v, v["moe_variant"]))
    kw.pop("deepspeed")                                           # the object itself needs the deepspeed package
    c = SFTConfig(**kw)
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps, c.learning_rate, c.bf16) == (4, 1, 1e-5, True)
    assert c.router_aux_loss_coef == 0.0 and c.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert (v["moe_model"], v["moe_variant"], v["moe_aux_loss_coeff"], v["moe_z_loss_coeff"]) == ("Qwen/Qwen3-30B-A3B", "global_z", 1e-4, 5e-4)
    assert c.run_name == "moe-global_z-a0.0001-b0.0005"


if __name__ == "__main__":           # the two-process worker, under torchrun
    import faulthandler; faulthandler.dump_traceback_later(300, exit=True)
    _two_rank_worker(sys.argv[1])
    print("worker done", flush=True)
