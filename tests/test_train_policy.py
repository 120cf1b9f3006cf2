"""The frozen copy of the starting policy that rl.decision_level compares against."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from mosaic_gym.train.policy import frozen_copy  # noqa: E402
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
