"""Eq. 9 as small functions (magicagent.rl): each term checked by hand, and the whole GRPO loss checked against TRL's
own `GRPOTrainer._compute_loss` on one fixed batch, values and gradients, with and without TRL's KL correction."""
import math, os, warnings
import pytest
import torch
from magicagent.rl import (group_advantages, token_logprobs, token_entropy, clipped_surrogate, kl_k3, token_mean,
                           trajectory_mean, PolicyBatch, TERMS, term, rl_loss, grpo_coefs, trl_grpo_loss, completion_logprobs)


def test_group_advantages_are_centred_and_scaled_per_group():
    r = torch.tensor([1., 0., 0., 0., 2., 2., 2., 2.])
    a = group_advantages(r, 4)
    first = (r[:4] - 0.25) / (r[:4].std() + 1e-4)
    assert torch.allclose(a[:4], first) and torch.equal(a[4:], torch.zeros(4))     # a group without variance: no advantage
    assert torch.allclose(group_advantages(r, 4, scale="none")[:4], r[:4] - 0.25)
    assert torch.allclose(group_advantages(r, 4, scale="batch"), torch.cat([r[:4] - 0.25, r[4:] - 2.0]) / (r.std() + 1e-4))
    with pytest.raises(ValueError, match="multiple of G=3"): group_advantages(r, 3)
    with pytest.raises(ValueError, match="scale must be"): group_advantages(r, 4, scale="rank")


def test_logprobs_and_entropy_against_the_definitions():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 3, 7, generator=g), torch.randint(0, 7, (2, 3), generator=g)
    p = torch.softmax(logits / 0.7, -1)
    assert torch.allclose(token_logprobs(logits, ids, 0.7), p.gather(-1, ids[..., None]).squeeze(-1).log(), atol=1e-6)
    assert torch.allclose(token_entropy(logits, 0.7), -(p * p.log()).sum(-1), atol=1e-6)
    assert torch.allclose(token_entropy(torch.zeros(1, 1, 8)), torch.tensor([[math.log(8)]]))


def test_clipped_surrogate_clips_on_the_side_the_advantage_points():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[0.5, 0.9, 1.1, 1.5]]))
    s_pos = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    assert torch.allclose(s_pos, torch.tensor([[0.5, 0.9, 1.1, 1.28]]))   # A>0: capped above at 1+ε_high, not below
    s_neg = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.28)
    assert torch.allclose(s_neg, torch.tensor([[-0.8, -0.9, -1.1, -1.5]]))  # A<0: floored at 1−ε_low, not capped above


def test_kl_k3_is_non_negative_and_zero_only_at_equality():
    lp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    assert torch.equal(kl_k3(lp, lp), torch.zeros(1, 3))
    ref = torch.log(torch.tensor([[0.3, 0.1, 0.9]]))
    k = kl_k3(lp, ref)
    d = ref - lp
    assert torch.allclose(k, d.exp() - d - 1) and (k[0, :2] > 0).all() and k[0, 2] == 0


def test_means_over_tokens_rows_and_trajectories():
    x, m = torch.tensor([[1., 2., 3.], [4., 5., 6.]]), torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert torch.equal(token_mean(x, m), torch.tensor([1.5, 0.0]))                  # a row without tokens gives 0
    per_row, traj = torch.tensor([1., 3., 10.]), torch.tensor([7, 7, 2])
    assert trajectory_mean(per_row, traj).item() == pytest.approx((2.0 + 10.0) / 2)  # each trajectory counts once
    assert trajectory_mean(per_row).item() == pytest.approx(14 / 3)


def test_rl_loss_sums_switched_terms_and_descent_follows_the_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]])).requires_grad_()
    b = PolicyBatch(logp=logp, mask=torch.ones(2, 2), adv=torch.tensor([1.0, -1.0]))
    loss, parts = rl_loss(b, grpo_coefs(0.0))
    assert set(parts) == {"clip"} and loss.item() == pytest.approx(0.0, abs=1e-7)   # ρ=1: −mean(A) = 0
    loss.backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()
    with pytest.raises(ValueError, match="needs ref_logp"): rl_loss(PolicyBatch(logp=logp, mask=torch.ones(2, 2), adv=torch.zeros(2)), {"kl": 1.0})
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \['entropyy'\]"): rl_loss(b, {"entropyy": 1.0})


def test_a_registered_term_joins_the_loss_with_its_coefficient():
    @term("_test_constant")
    def _const(b, cfg): return torch.full((b.logp.shape[0],), float(cfg.get("value", 2.0)))
    try:
        b = PolicyBatch(logp=torch.zeros(3, 2), mask=torch.ones(3, 2), adv=torch.zeros(3))
        loss, parts = rl_loss(b, {"clip": 1.0, "_test_constant": 0.5}, value=4.0)
        assert parts["_test_constant"] == 4.0 and loss.item() == pytest.approx(2.0)
    finally: TERMS.pop("_test_constant")


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from magicagent.models import build_tiny_random
    warnings.filterwarnings("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    d = str(tmp_path_factory.mktemp("tiny"))
    model, tok = build_tiny_random()
    model.save_pretrained(d); tok.save_pretrained(d)
    cfg = GRPOConfig(output_dir=d, per_device_train_batch_size=4, num_generations=2, beta=0.04, loss_type="grpo", temperature=0.9,
                     max_completion_length=4, report_to="none", use_cpu=True, logging_steps=1, bf16=False)
    return GRPOTrainer(model=d, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=cfg,
                       train_dataset=Dataset.from_list([{"prompt": "hi"}] * 4), processing_class=tok)


@pytest.mark.parametrize("correction", [True, False])
def test_grpo_loss_and_gradients_equal_trls(trl_trainer, correction):
    tr = trl_trainer
    g = torch.Generator().manual_seed(0)
    P, C = torch.randint(5, 500, (4, 3), generator=g), torch.randint(5, 500, (4, 4), generator=g)
    pm, cm = torch.ones(4, 3, dtype=torch.long), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    with torch.no_grad(): lp = completion_logprobs(tr.model, P, pm, C, cm, 0.9)
    old = lp + 0.3 * torch.randn(4, 4, generator=g)              # far enough from π_θ that some ratios are clipped
    ref, adv = lp - 0.2 * torch.randn(4, 4, generator=g), torch.tensor([1., -1., .5, -.5])
    inputs = {"prompt_ids": P, "prompt_mask": pm, "completion_ids": C, "completion_mask": cm, "advantages": adv,
              "old_per_token_logps": old, "ref_per_token_logps": ref}
    tr.args.use_bias_correction_kl = correction
    params = [p for p in tr.model.parameters() if p.requires_grad]

    tr.model.zero_grad()
    theirs = trl_grpo_loss(tr, inputs); theirs.backward()
    g_theirs = [p.grad.clone() for p in params]
    tr.model.zero_grad()
    b = PolicyBatch(logp=completion_logprobs(tr.model, P, pm, C, cm, 0.9), mask=cm, adv=adv, old_logp=old, ref_logp=ref)
    ours, parts = rl_loss(b, grpo_coefs(tr.beta), eps_low=tr.epsilon_low, eps_high=tr.epsilon_high, kl_ratio=correction)
    ours.backward()
    g_ours = [p.grad.clone() for p in params]
    tr.model.zero_grad()

    ratio = torch.exp(b.logp.detach() - old)[cm.bool()]
    assert ((ratio < 1 - tr.epsilon_low) | (ratio > 1 + tr.epsilon_high)).any()    # the clip acts in this batch
    assert parts["kl"] > 0
    assert abs(theirs.item() - ours.item()) < 1e-6
    for a, c in zip(g_theirs, g_ours):
        assert torch.allclose(a, c, atol=1e-6, rtol=1e-4)
    assert sum(float(x.abs().sum()) for x in g_ours) > 0
