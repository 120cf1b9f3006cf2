"""TRL's fused LM head projecting only the labelled positions on CPU: same loss and gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
trl_utils = pytest.importorskip("trl.trainer.utils")
chunked_logprob = pytest.importorskip("trl.kernels.chunked_logprob")

from mosaic_gym.train.labelled_head import project_labelled_positions_only  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402


def _loss_and_grads(model: object, ids: object, labels: object) -> tuple[float, list[object]]:
    model.zero_grad()  # type: ignore[attr-defined]
    loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss  # type: ignore[operator]
    loss.backward()
    return float(loss), [p.grad.clone() for p in model.parameters() if p.grad is not None]  # type: ignore[attr-defined]


def test_only_labelled_positions_gives_the_loss_and_gradients_of_every_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TRL's own switch, whatever earlier tests made of it; undone after the test
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
    model = tiny_llama(64)
    trl_utils.add_fused_lm_head(model)
    ids = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[0, :7] = -100  # a prompt, then the agent's tokens
    labels[1, :3] = -100
    labels[1, 9:] = -100
    assert not trl_utils._use_triton(torch.device("cpu")), "TRL projects every position on CPU"
    every_loss, every_grads = _loss_and_grads(model, ids, labels)

    project_labelled_positions_only()
    switch = trl_utils._use_triton
    project_labelled_positions_only()
    assert trl_utils._use_triton is switch, "called again, it wraps its own switch no further"
    assert switch(torch.device("cpu"))
    labelled_loss, labelled_grads = _loss_and_grads(model, ids, labels)

    logits = model(input_ids=ids).logits[:, :-1]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert labelled_loss == pytest.approx(float(expected), rel=1e-5)
    assert labelled_loss == pytest.approx(every_loss, rel=1e-5)
    assert len(labelled_grads) == len(every_grads) > 0
    for labelled, every in zip(labelled_grads, every_grads, strict=True):
        torch.testing.assert_close(labelled, every, rtol=1e-4, atol=1e-6)
