"X²PO (51_xpo): each loss term on hand-made tensors, the switches, the running references, one RL step on a real small model, the command line."
import json
import pytest
import torch

pytest.importorskip("textworld")
from magicagent.rl import PolicyBatch, TERMS, grpo_coefs, rl_loss
from magicagent.xpo import (EntropyReference, METHODS, answer_logits, method_coefs, pack_turns, smoothing_penalty,
                            table5_rows, term_settings, xpo_main, xpo_step, warm_values)
from magicagent.envs import Episode, Turn, small_policy, word_tokenizer, chat_ids


def test_smoothing_hinge_gradient_outside_the_band_only():
    h = torch.tensor([0.1, 0.49, 0.5, 1.0, 2.0, 2.01, 5.0], requires_grad=True)
    p = smoothing_penalty(h, torch.ones_like(h), kappa_low=0.5, kappa_high=2.0)
    p.sum().backward()
    assert h.grad.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert p[2:5].abs().max() == 0 and p[0] > 0 and p[-1] > 0


def test_smooth_term_has_a_gradient_through_the_entropies():
    H = torch.tensor([[0.1, 3.0, 0.7]], requires_grad=True)
    b = PolicyBatch(logp=torch.zeros(1, 3), mask=torch.ones(1, 3), adv=torch.ones(1), entropy=H,
                    extras={"h_ref": torch.tensor([[1.0, 1.0, 0.2]])})
    v = TERMS["smooth"](b, {"smooth_alpha": 0.1, "kappa_low": 0.5, "kappa_high": 2.0})
    v.sum().backward()
    assert torch.allclose(v, torch.tensor([0.1 * ((0.5 - 0.1) + (3.0 - 2.0) + (0.7 - 0.4)) / 3]))
    assert torch.allclose(H.grad, torch.tensor([[-0.1 / 3, 0.1 / 3, 0.1 / 3]]))


def test_smooth_term_is_zero_without_a_reference():
    b = PolicyBatch(logp=torch.zeros(2, 3), mask=torch.ones(2, 3), adv=torch.ones(2), entropy=torch.rand(2, 3))
    assert TERMS["smooth"](b, {}).abs().sum() == 0


def test_entropy_term_averages_tokens_turns_then_trajectories():
    H = torch.tensor([[1.0, 3.0, 9.0], [4.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1., 1., 0.], [1., 0., 0.], [1., 1., 1.]])
    b = PolicyBatch(logp=torch.zeros(3, 3), mask=mask, adv=torch.zeros(3), entropy=H, traj=torch.tensor([5, 5, 8]))
    loss, parts = rl_loss(b, {"entropy": 1.0})
    assert abs(loss.item() + ((2.0 + 4.0) / 2 + 0.5) / 2) < 1e-6


def test_ib_term_reads_think_tokens_and_holds_the_advantage():
    H = torch.tensor([[1.0, 1.0, 8.0], [2.0, 4.0, 8.0]], requires_grad=True)
    adv = torch.tensor([1.0, -2.0], requires_grad=True)
    think = torch.tensor([[1., 1., 0.], [1., 1., 0.]])
    b = PolicyBatch(logp=torch.zeros(2, 3), mask=torch.ones(2, 3), adv=adv, entropy=H, extras={"think": think})
    v = TERMS["ib"](b, {})
    assert torch.allclose(v, torch.tensor([-1.0, 6.0]))
    v.sum().backward()
    assert adv.grad is None and torch.allclose(H.grad, torch.tensor([[-0.5, -0.5, 0.0], [1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="think-token mask"):
        TERMS["ib"](PolicyBatch(logp=torch.zeros(1, 1), mask=torch.ones(1, 1), adv=torch.ones(1), entropy=torch.ones(1, 1)), {})


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(5, 6, generator=g).requires_grad_()
    kw = dict(mask=(torch.rand(5, 6, generator=g) > 0.3).float(), adv=torch.randn(5, generator=g), old_logp=lp.detach() + 0.05 * torch.randn(5, 6, generator=g),
              ref_logp=lp.detach() - 0.1, entropy=torch.rand(5, 6, generator=g), traj=torch.tensor([0, 0, 1, 2, 2]),
              extras={"think": (torch.rand(5, 6, generator=g) > 0.5).float(), "h_ref": torch.full((5, 6), 0.2)})
    return lp, kw


@pytest.mark.parametrize("method", ["epo", "x2po"])
def test_with_every_switch_off_the_loss_is_grpo(method):
    lp, kw = _batch()
    off = {"xpo_kl": 0.04, "xpo_entropy_coef": 0, "xpo_smooth_coef": 0, "xpo_ib_coef": 0}
    ours, parts = rl_loss(PolicyBatch(logp=lp, **kw), method_coefs(method, off), **term_settings(off))
    g1, = torch.autograd.grad(ours, lp)
    theirs, _ = rl_loss(PolicyBatch(logp=lp, **kw), grpo_coefs(0.04))
    g2, = torch.autograd.grad(theirs, lp)
    assert ours.item() == theirs.item() and torch.equal(g1, g2) and set(parts) == {"clip", "kl"}


def test_switches_add_their_terms():
    lp, kw = _batch(1)
    v = {"xpo_kl": 0.0, "xpo_entropy_coef": 0.01, "xpo_smooth_coef": 1.0, "xpo_ib_coef": 0.1}
    assert set(method_coefs("grpo", v)) == {"clip", "kl"} and set(method_coefs("x2po", v)) == set(METHODS["x2po"])
    _, parts = rl_loss(PolicyBatch(logp=lp, **kw), method_coefs("x2po", v), **term_settings(v))
    assert set(parts) == {"clip", "entropy", "smooth", "ib"}          # kl at 0 is off
    with pytest.raises(ValueError, match="unknown method 'ppo'"): method_coefs("ppo", v)


def test_entropy_reference_is_the_running_mean_of_past_steps():
    r = EntropyReference()
    assert r.value is None and r.per_token(torch.ones(1, 2)) is None
    for t, a in ((2.0, 0.1), (4.0, 0.3), (3.0, 0.2)): r.update({"think": t, "action": a, "all": (t + a) / 2})
    assert r.value["think"] == 3.0 and abs(r.value["action"] - 0.2) < 1e-9
    assert torch.allclose(r.per_token(torch.tensor([[1., 0.]])), torch.tensor([[3.0, 0.2]]))
    shared = EntropyReference(by_type=False); shared.update({"think": 2.0, "action": 0.0, "all": 1.0})
    assert torch.allclose(shared.per_token(torch.tensor([[1., 0.]])), torch.tensor([[1.0, 1.0]]))


@pytest.fixture(scope="module")
def policy():
    texts = ["<think>i am in the attic. next i should go east.</think><action>go east</action>", "take coin go west north south", "user assistant"]
    tok = word_tokenizer(texts)
    return small_policy(tok, hidden_size=32, layers=1, seed=0), tok


def _episodes(tok, rewards, turns=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for r in rewards:
        e = Episode(game=0, won=r > 0)
        for t in range(turns):
            p = chat_ids(tok, "go east go west take coin" * (1 + t))
            c = torch.randint(4, len(tok), (3 + t,), generator=g).tolist() + [tok.eos_token_id]
            e.turns.append(Turn(p, c, [True] * 2 + [False] * (len(c) - 2), "", "go east"))
        eps.append(e)
    return eps


def test_answer_logprobs_do_not_depend_on_padding(policy):
    model, tok = policy
    eps = _episodes(tok, [10.0, 0.0], turns=2)
    turns = [t for e in eps for t in e.turns]
    pk = pack_turns(turns, tok.pad_token_id)
    with torch.no_grad():
        both = torch.log_softmax(answer_logits(model, pk), -1)
        for i, t in enumerate(turns):
            one = torch.log_softmax(answer_logits(model, pack_turns([t], tok.pad_token_id)), -1)
            n = len(t.completion_ids)
            assert torch.allclose(both[i, :n], one[0, :n], atol=1e-5)


def test_xpo_step_gradient_does_not_depend_on_the_chunking(policy):
    model, tok = policy
    eps = _episodes(tok, [10.0, 0.0, 0.0, 10.0, -0.1, 10.0], turns=2, seed=1)
    coefs = method_coefs("x2po", {"xpo_kl": 0.0, "xpo_entropy_coef": 0.01, "xpo_smooth_coef": 1.0, "xpo_ib_coef": 0.1})
    gs = []
    for chunk in (1, 6):
        m = small_policy(tok, hidden_size=32, layers=1, seed=0)
        captured = {}
        class Capture(torch.optim.SGD):
            def step(self, closure=None):
                captured["g"] = torch.cat([p.grad.flatten().clone() for p in m.parameters()])
                return super().step(closure)
        refs = EntropyReference(); refs.update({"think": 1.0, "action": 0.1, "all": 0.5})
        stats = xpo_step(m, Capture(m.parameters(), lr=0.0), eps, 3, coefs, term_settings({}), refs, tok.pad_token_id, chunk=chunk, max_grad_norm=1e9)
        gs.append(captured["g"])
    assert torch.allclose(gs[0], gs[1], atol=1e-6) and gs[0].abs().sum() > 0
    assert refs.steps == 2 and stats["think_entropy"] > 0 and 0 <= stats["success"] <= 1 and "loss_ib" in stats


def test_xpo_step_moves_the_policy_towards_the_better_episode(policy):
    _, tok = policy
    model = small_policy(tok, hidden_size=32, layers=1, seed=2)
    eps = _episodes(tok, [10.0, 0.0], turns=1, seed=3)
    good, bad = eps[0].turns[0], eps[1].turns[0]
    def logp(t):
        pk = pack_turns([t], tok.pad_token_id)
        with torch.no_grad(): return torch.log_softmax(answer_logits(model, pk), -1)[0].gather(-1, pk["completion"][0].unsqueeze(-1)).sum().item()
    before = logp(good) - logp(bad)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        xpo_step(model, opt, eps, 2, method_coefs("grpo", {"xpo_kl": 0.0}), term_settings({}), EntropyReference(), tok.pad_token_id)
    assert logp(good) - logp(bad) > before


def test_table5_rows():
    sums = [{"method": "grpo", "seed": 0, "evals": [{"step": 0, "id_success": .25, "ood_success": 0.0}, {"step": 5, "id_success": .5, "ood_success": .25},
                                                     {"step": 10, "id_success": .25, "ood_success": .5}]}]
    rows = table5_rows(sums, converged=2)
    assert {"method": "grpo", "seed": 0, "split": "id", "succ_star": .5, "succ": .375} in rows
    assert {"method": "warm", "seed": 0, "split": "ood", "succ_star": 0.0, "succ": 0.0} in rows
    assert all(set(r) == {"method", "seed", "split", "succ_star", "succ"} for r in rows)


def test_warm_values_take_the_xpo_sft_keys():
    v = warm_values({"sft_lr": 1e-5, "xpo_sft_lr": 3e-3, "xpo_sft_epochs": 20, "sft_epochs": 1, "xpo_sft_batch_size": None, "sft_batch_size": 4})
    assert v["sft_lr"] == 3e-3 and v["sft_epochs"] == 20 and v["sft_batch_size"] == 4 and v["sft_max_steps"] == -1


def test_cli_errors_are_one_line(capsys):
    assert xpo_main(["--profile", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
    assert xpo_main(["--profile", "smoke", "--set", "no_such_key=1"]) == 2
    assert xpo_main(["--method", "ppo"]) == 2
    from magicagent.cli import parse
    assert parse("xpo", ["--profile", "cpu", "--method", "grpo", "--method", "x2po"]).methods == ["grpo", "x2po"]


def test_full_profile_launch_command_dry_run(tmp_path, monkeypatch, capsys):
    "The full profile's X²PO launch: 32 processes on 4 nodes without DeepSpeed, arguments the verb accepts, ALFWorld's data checked first."
    from magicagent.pipeline import launch_command, stage_sets
    from magicagent.profiles import load_profile, profile_values
    from magicagent.xpo import xpo_run
    v = {**load_profile("full"), "deepspeed": None}
    cmd = launch_command("xpo", v, stage_sets(v) + ["--model", str(tmp_path / "warm")])
    assert cmd[:2] == ["accelerate", "launch"] and "--use_deepspeed" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "32" and cmd[cmd.index("--num_machines") + 1] == "4"
    assert cmd[cmd.index("-m") + 1].startswith("magicagent.") and cmd[cmd.index("-m") + 2] == "xpo"
    argv = cmd[cmd.index("-m") + 3:] + ["--run-root", str(tmp_path), "--set", f"alfworld_data={tmp_path / 'alfworld'}"]
    from magicagent import cli
    a = cli.parse("xpo", argv)          # the verb as the command line registers it
    vals = a.values
    assert vals["xpo_env"] == "alfworld" and vals["xpo_model"] == "Qwen/Qwen2.5-3B-Instruct" and vals["xpo_max_turns"] == 50
    assert vals["xpo_group_size"] == 8 and vals["xpo_games_per_step"] % vals["num_gpus"] == 0 and vals["deepspeed"] is None
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    assert xpo_run(a) == 2
    assert "ALFWorld data folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_without_a_warm_start_names_the_sft_command(tmp_path, capsys):
    rc = xpo_main(["--profile", "smoke", "--run-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no warm start at" in err and "magicagent sft --profile smoke" in err and "expert.jsonl" in err
    assert (tmp_path / "smoke" / "xpo" / "init" / "config.json").exists() and (tmp_path / "smoke" / "xpo" / "expert.jsonl").exists()
