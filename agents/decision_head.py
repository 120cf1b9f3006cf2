"""The decision's own read-out: a learned shift of ``logit(" No")`` where a reply decides.

A reply of the text protocol opens with a fixed question ("<think>Is it safe to go on?") and
its next token, " No" or " Yes", is the decision to refuse or to act. Trained through the LoRA
weights, that one token moved as a bias shared by every task (docs/results-log.md, sessions 4-9),
and a step large enough to order it broke the format of the rest of the reply (sessions 12-15).
The head gives the decision parameters of its own: at a decision, the margin
``logit(" No") - logit(" Yes")`` is shifted by ``weight · h + bias``, with ``h`` the model's
final hidden state there (what the LM head reads), so the model's own representation of the
task sets the decision and nothing else in the reply changes. A trainer moves it
(``rl.decision_optimizer: head``) and saves it beside the adapter (:data:`HEAD_FILE`); an agent
loaded from that folder decides with it. A head trained on first replies only (``scope``
"first", from ``rl.decision_points: first``) shifts first replies only: later replies decide
with the model alone, as they did in the contexts it learned from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch

HEAD_FILE = "decision_head.pt"  # beside an adapter (and in each RL checkpoint)
Scope = Literal["first", "every"]  # the replies a head decides: an episode's first, or every one


class DecisionHead:
    """``weight · h + bias`` added to ``logit(answers[0])`` at the token after ``question``.

    Mutable on purpose: a trainer steps the same object its rollouts' generator reads."""

    def __init__(
        self,
        question: Sequence[int],
        answers: tuple[int, int],
        weight: torch.Tensor,
        bias: float = 0.0,
        scope: Scope = "every",
    ):
        if not question:
            raise ValueError("a decision head needs the question's tokens")
        if weight.dim() != 1:
            raise ValueError(f"the head's weight is one vector over the hidden state, got shape {tuple(weight.shape)}")
        if scope not in ("first", "every"):
            raise ValueError(f"a head's scope is 'first' or 'every', got {scope!r}")
        self.question = tuple(int(token) for token in question)
        self.answers = (int(answers[0]), int(answers[1]))
        self.weight = weight.detach().float().clone()
        self.bias = float(bias)
        self.scope: Scope = scope

    @classmethod
    def zeros(cls, question: Sequence[int], answers: tuple[int, int], hidden_size: int, scope: Scope) -> DecisionHead:
        """A head that changes nothing yet: where a trainer starts."""
        return cls(question, answers, torch.zeros(hidden_size), scope=scope)

    def decides(self, first_reply: bool) -> bool:
        """Whether the head shifts the decision of an episode's first reply (True) or a later one."""
        return first_reply or self.scope == "every"

    def decides_after(self, reply: Sequence[int], first_reply: bool) -> bool:
        """Whether the next token of a reply that is ``reply`` so far is a decision this head shifts."""
        return self.decides(first_reply) and len(reply) == len(self.question) and tuple(reply) == self.question

    def shift(self, hidden: torch.Tensor) -> torch.Tensor:
        """The margin's shift for final hidden states ``hidden`` (``[..., hidden_size]``)."""
        return hidden.float() @ self.weight.to(hidden.device) + self.bias

    def apply(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``logits`` (rows at decisions, ``[rows, vocab]``) with each row's shift added to " No"."""
        shifted = logits.clone()
        shifted[:, self.answers[0]] += self.shift(hidden).to(logits.device, logits.dtype)
        return shifted

    def save(self, folder: Path) -> None:
        torch.save(
            {
                "question": list(self.question),
                "answers": list(self.answers),
                "weight": self.weight,
                "bias": self.bias,
                "scope": self.scope,
            },
            folder / HEAD_FILE,
        )

    @classmethod
    def load(cls, folder: Path) -> DecisionHead | None:
        """The head saved in ``folder``, or None when it has none (an adapter trained without one)."""
        path = folder / HEAD_FILE
        if not path.exists():
            return None
        try:
            saved: dict[str, Any] = torch.load(path, weights_only=True)
            # Heads saved before scopes existed decided every reply.
            scope = cast(Scope, saved.get("scope", "every"))
            return cls(saved["question"], tuple(saved["answers"]), saved["weight"], saved["bias"], scope)
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise ValueError(f"{path} is not a decision head: {error}") from None
