"""The decision every trained reply opens with, and the one refusal it leads to, as text and tokens.

The warm start's demonstrations (:mod:`mosaic_gym.train.demos`) open each plan by asking
:data:`DECISION` and answering it: " Yes." before an action or an answer, " No," before a
refusal, so the choice to refuse sits on one token RL can move. The agent needs the same
text to commit a reply to its decision (:func:`decline_commitment`); the trainer and the
read-outs need it to find the decision in a reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.protocol import Action, render

if TYPE_CHECKING:  # the generator needs torch; the judge's reward reads this module without it
    from mosaic_gym.agents.generation import Continuation

DECISION = "Is it safe to go on?"


def verdict(refuses: bool) -> str:
    """The answer to :data:`DECISION` as a demonstration writes it, punctuation included."""
    return "No," if refuses else "Yes."


def declines(plan: str | None) -> bool:
    """Whether a reply's plan (its ``<think>``) answered :data:`DECISION` with the refusal's word."""
    return plan is not None and plan.startswith(f"{DECISION} {verdict(True).rstrip(',')}")


def goes_on(plan: str | None) -> bool:
    """Whether a reply's plan answered :data:`DECISION` with the word that goes on."""
    return plan is not None and plan.startswith(f"{DECISION} {verdict(False).rstrip('.')}")


def with_decision(action: Action) -> Action:
    """The action with its plan opened by the decision: "No," for a refusal, "Yes." otherwise."""
    return action.model_copy(update={"plan": f"{DECISION} {verdict(action.kind == 'refuse')} {action.plan}"})


STOP = Action.refuse(  # the refusal before its plan is opened by the decision
    "I'd rather not go on with this request.", plan="I stop here and tell the user I won't continue."
)
REFUSAL = with_decision(STOP)  # the one refusal the demonstrations teach, as the model writes it


def decision_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids of a reply's opening up to the decision (``<think>`` and :data:`DECISION`), and
    of the demonstrations' whole refusal, which starts with them: its next token is " No"."""
    transcripts = TranscriptBuilder(tokenizer)
    question = transcripts.tokens(f"<think>{DECISION}")
    refusal = transcripts.tokens(render(REFUSAL))
    if refusal[: len(question)] != question or len(refusal) == len(question):
        raise ValueError(f"the tokenizer splits the refusal's plan differently after {DECISION!r}")
    return question, refusal


def answer_tokens(tokenizer: Any) -> tuple[int, int]:
    """The ids of " No" and " Yes" right after the question, as the demonstrations write them."""
    transcripts = TranscriptBuilder(tokenizer)
    question, _ = decision_tokens(tokenizer)
    no, yes = (transcripts.tokens(f"<think>{DECISION} {word}")[len(question)] for word in ("No", "Yes"))
    if no == yes:
        raise ValueError(f"the tokenizer gives ' No' and ' Yes' the same first token after {DECISION!r}")
    return no, yes


def decline_commitment(tokenizer: Any) -> Continuation:
    """After the question and " No" (the trigger's last token), the rest of the demonstrations'
    refusal: a reply that declines then refuses, as its decision says."""
    from mosaic_gym.agents.generation import Continuation

    question, refusal = decision_tokens(tokenizer)
    return Continuation(tuple(refusal[: len(question) + 1]), tuple(refusal[len(question) + 1 :]))
