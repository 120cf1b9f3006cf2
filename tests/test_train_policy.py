"""The policy's copies: the frozen start that rl.decision_level compares against, and the
merged copy RL plays sample from."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from mosaic_gym.train.policy import PlayModel, frozen_copy  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402


def test_the_copy_keeps_the_starting_adapter_and_shares_the_frozen_base() -> None:
    torch.manual_seed(0)
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    policy = peft.get_peft_model(tiny_llama(64), config)
    reference = frozen_copy(policy)
    ids = torch.tensor([[3, 4, 5, 6]])
    before = reference(input_ids=ids).logits
    base = dict(policy.named_parameters())
    copied = dict(reference.named_parameters())
    shared = [name for name, p in base.items() if copied[name] is p]
    assert shared and all("lora_" not in name for name in shared), "the base weights, and only they, are shared"
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    with torch.no_grad():
        for name, p in base.items():
            if "lora_" in name:
                p.add_(1.0)  # the policy trains on
    assert torch.equal(reference(input_ids=ids).logits, before), "the copy stays where the policy started"
    assert not torch.allclose(policy(input_ids=ids).logits, before)


def _policy() -> object:
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return peft.get_peft_model(tiny_llama(vocab=40), config)


def test_plays_sample_a_merged_copy_with_the_policys_outputs() -> None:
    policy, plays = _policy(), PlayModel()
    merged = plays.of(policy)
    assert merged is not policy and not any("lora" in name for name, _ in merged.named_modules())
    assert not merged.training and not any(p.requires_grad for p in merged.parameters())
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, policy(ids).logits, atol=1e-5)


def test_the_copy_is_kept_until_the_policys_weights_change() -> None:
    policy, plays = _policy(), PlayModel()
    first = plays.of(policy)
    assert plays.of(policy) is first
    lora_b = next(p for name, p in policy.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        lora_b.add_(0.5)  # as an optimizer step writes it
    second = plays.of(policy)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert second is not first and torch.allclose(second(ids).logits, policy(ids).logits, atol=1e-5)
        assert not torch.allclose(first(ids).logits, policy(ids).logits, atol=1e-3)


def test_a_policy_without_adapter_plays_itself() -> None:
    model = tiny_llama(vocab=40)
    assert PlayModel().of(model) is model
