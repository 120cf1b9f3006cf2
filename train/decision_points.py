"""The ranking and the level over every decision of a step's plays, not only the first reply's.

A play decides at each reply that opens with the check, and the warm start refuses mostly at
later replies: in docs/results-log.md (session 7) the first reply held 3-5 of a run's 13-18 harmful
refusals. With ``rl.decision_points: every``, a group's margin is the mean of
``logit(" No") - logit(" Yes")`` over every decision its plays wrote, so the ranking
(:func:`~mosaic_gym.train.decision_rank.rank_loss`) and the level
(:func:`~mosaic_gym.train.decision_rank.level_loss`) reach those replies too.

Those contexts are whole plays, too long to hold a graph for each at once. So the step first
reads every margin without grad (:func:`point_weights` gives the loss's gradient with respect
to each), and each loss pass of TRL then adds ``weight * margin`` for the plays it holds,
reading the margins from the hidden states of TRL's own forward (:func:`last_hidden_states`):
the same gradient as the loss, at the cost of one forward pass per play without grad (two with
the level's frozen copy). Decisions outside TRL's passes (the first reply's contexts, one per
group, and the groups ``rl.decision_replay`` keeps) get the same weights, and their gradient
one context at a time (:func:`backward_weighted`). Reads and those passes run without dropout
(:func:`dropout_off`); TRL's forward keeps it, so under ``lora.dropout`` the weights of plays in
TRL's passes come from a margin their gradient does not see exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mosaic_gym.train.decision_rank import level_loss, rank_loss

if TYPE_CHECKING:
    from mosaic_gym.agents.decision_head import DecisionHead


@dataclass(frozen=True)
class DecisionReads:
    """Where each play of a step wrote its decisions: its tokens (prompt, then completion) up to
    its last decision, its prompt's length, and its decision tokens' positions in the completion."""

    sequences: list[list[int]]
    prompt_lengths: list[int]
    positions: list[list[int]]

    def rows(self, play: int, prompt_width: int | None = None) -> list[int]:
        """The positions whose next-token logits are the play's decisions, in its sequence, or in a
        batch whose prompts are left-padded to ``prompt_width``."""
        width = self.prompt_lengths[play] if prompt_width is None else prompt_width
        return [width + position - 1 for position in self.positions[play]]


def decision_reads(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]
) -> DecisionReads:
    """The reads of plays whose decision tokens sit at ``positions`` of their completions."""
    sequences = [
        [*prompt, *completion[: max(decisions)]] if decisions else []
        for prompt, completion, decisions in zip(prompts, completions, positions, strict=True)
    ]
    return DecisionReads(sequences, [len(prompt) for prompt in prompts], [list(p) for p in positions])


def final_states(model: Any, ids: Sequence[int], rows: Sequence[int]) -> Any:
    """The final hidden states (what the LM head reads) at each of ``rows`` of ``ids``, in one forward pass."""
    import torch

    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([list(ids)], device=device), output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1][0, list(rows)]


def decision_margins(model: Any, states: Any, answers: tuple[int, int], head: DecisionHead | None = None) -> Any:
    """``logit(" No") - logit(" Yes")`` from final hidden states at decisions (``[n, hidden]``),
    with the decision head's shift when the policy has one."""
    no, yes = answers
    lm_head = model.get_output_embeddings()
    # In the model's dtype: under bf16 mixed precision accelerate hands back float32 states.
    logits = lm_head(states.to(lm_head.weight.dtype)).float()
    margins = logits[:, no] - logits[:, yes]
    return margins if head is None else margins + head.shift(states)


def margins_at(
    model: Any, ids: Sequence[int], rows: Sequence[int], answers: tuple[int, int], head: DecisionHead | None = None
) -> Any:
    """The decision margins predicted at each of ``rows`` of ``ids``, in one forward pass."""
    return decision_margins(model, final_states(model, ids, rows), answers, head)


@contextmanager
def dropout_off(model: Any) -> Iterator[None]:
    """``model`` with its dropout layers in eval mode. A decision's weight comes from one read of its
    margin and its gradient from another pass: under ``lora.dropout`` each would draw its own mask,
    and the weight would belong to a different margin than the one it multiplies."""
    import torch

    active = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.training]
    for module in active:
        module.eval()
    try:
        yield
    finally:
        for module in active:
            module.train()


def read_states(model: Any, reads: DecisionReads) -> list[Any]:
    """Every play's final hidden states at its decisions, without grad or dropout: one forward
    pass per play (``[0, hidden]`` for a play without a decision)."""
    import torch

    width = model.get_output_embeddings().weight.shape[1]
    with torch.no_grad(), dropout_off(model):
        return [
            final_states(model, ids, reads.rows(play)) if ids else torch.zeros(0, width)
            for play, ids in enumerate(reads.sequences)
        ]


class FixedStates:
    """:func:`read_states` for a model whose weights stay fixed (rl.train_adapter false): each
    play is read once and kept while later calls still ask for it, so a replay of N groups
    costs the reads of its new groups alone."""

    def __init__(self) -> None:
        self._kept: dict[tuple[tuple[int, ...], tuple[int, ...]], Any] = {}

    def __call__(self, model: Any, reads: DecisionReads) -> list[Any]:
        keys = [(tuple(ids), tuple(reads.rows(play))) for play, ids in enumerate(reads.sequences)]
        new = [play for play, key in enumerate(keys) if key not in self._kept]
        if new:
            unread = DecisionReads(
                [reads.sequences[play] for play in new],
                [reads.prompt_lengths[play] for play in new],
                [reads.positions[play] for play in new],
            )
            self._kept |= zip((keys[play] for play in new), read_states(model, unread), strict=True)
        self._kept = {key: self._kept[key] for key in keys}
        return [self._kept[key] for key in keys]  # a play asked for twice is returned twice


def read_margins(
    model: Any, reads: DecisionReads, answers: tuple[int, int], head: DecisionHead | None = None
) -> list[Any]:
    """Every play's decision margins under ``model`` (and ``head``), without grad or dropout."""
    return [decision_margins(model, states, answers, head) for states in read_states(model, reads)]


@dataclass(frozen=True)
class PointWeights:
    """Per play, the gradient of the step's decision loss with respect to each of its margins,
    and the loss's statistics for the logs."""

    weights: list[Any]  # per play, a tensor with one weight per decision
    stats: dict[str, float]


def point_weights(
    margins: Sequence[Any],
    reference: Sequence[Any] | None,
    verdicts: Sequence[float],
    group_size: int,
    rank: float,
    level: float,
    level_on: Literal["all", "acting"],
    level_by: Literal["group", "reply"],
    rank_by: Literal["group", "reply"] = "group",
) -> PointWeights:
    """The weights that turn ``rank * rank_loss + level * level_loss`` over the groups' mean
    margins into a sum over the plays' margins. ``margins`` (per play, without grad, in reply
    order) are the policy's, ``reference`` the frozen copy's at the same decisions (None without a
    level); a group's verdict is ``verdicts[g]``, and a group whose plays wrote no decision sits
    out. The level holds the groups' mean over every decision (``level_by="group"``), or one
    level per reply: the groups' mean over their plays' n-th decisions, for each n (``"reply"``).
    The ranking likewise ranks the groups' means over every decision (``rank_by="group"``), or,
    for each n, their means over their plays' n-th decisions, summed over n (``"reply"``): a
    later reply's context differs from the first's, so its margin is compared with its own kind."""
    import torch

    if len(margins) != len(verdicts) * group_size:
        raise ValueError(f"{len(margins)} plays' margins for {len(verdicts)} groups of {group_size}")
    leaves = [m.detach().float().clone().requires_grad_() for m in margins]
    present = _present(leaves, len(verdicts), group_size)
    loss = torch.zeros(())
    stats: dict[str, float] = {}
    if rank > 0:
        ranked = [
            rank_loss(torch.stack(refusing), torch.stack(acting))
            for groups, means in _means_by(leaves, present, group_size, rank_by).values()
            for refusing, acting in [_sides(groups, means, verdicts)]
            if refusing and acting
        ]
        if ranked:
            total = torch.stack(ranked).sum()
            loss = loss + rank * total
            stats["decision/rank_loss"] = float(total.detach())
    held = _held_groups(present, verdicts, level_on)
    if reference is not None and level > 0 and held:
        now = {n: means for n, (_, means) in _means_by(leaves, held, group_size, level_by).items()}
        start = {n: means for n, (_, means) in _means_by(reference, held, group_size, level_by).items()}
        # One level per reply, each held as the single level is: shifts of different replies
        # cannot cancel out.
        levelled = torch.stack([level_loss(now[n], start[n]) for n in now]).sum()
        shifts = torch.cat([now[n] - start[n] for n in now])
        loss = loss + level * levelled
        stats["decision/level_loss"] = float(levelled.detach())
        stats["decision/level_shift"] = float(shifts.mean().detach())
        if level_by == "reply":
            for n in now:
                stats[f"decision/level_shift/reply_{n + 1}"] = float((now[n] - start[n]).mean().detach())
    if not loss.requires_grad:
        return PointWeights([torch.zeros_like(m) for m in leaves], stats)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    weights = [torch.zeros_like(m) if g is None else g for m, g in zip(leaves, grads, strict=True)]
    return PointWeights(weights, stats)


def _present(margins: Sequence[Any], groups: int, group_size: int) -> list[int]:
    """The groups whose plays wrote at least one decision."""
    return [g for g in range(groups) if any(len(m) for m in margins[g * group_size : (g + 1) * group_size])]


def _held_groups(present: Sequence[int], verdicts: Sequence[float], level_on: Literal["all", "acting"]) -> list[int]:
    """The groups whose level is held: every group that wrote a decision, or those where acting won."""
    return [g for g in present if level_on == "all" or verdicts[g] < 0]


def level_weights(
    margins: Sequence[Any], verdicts: Sequence[float], group_size: int, level_on: Literal["all", "acting"]
) -> list[Any]:
    """Per play, the weight of each of its margins in the level: the held groups' mean of their
    mean margin over every decision. The level is then ``sum(weights * margins)``, linear in them."""
    import torch

    leaves = [m.detach().float().clone().requires_grad_() for m in margins]
    held = _held_groups(_present(leaves, len(verdicts), group_size), verdicts, level_on)
    if not held:
        return [torch.zeros_like(m) for m in leaves]
    level = _means_by(leaves, held, group_size, "group")[0][1].mean()
    grads = torch.autograd.grad(level, leaves, allow_unused=True)
    return [torch.zeros_like(m) if g is None else g for m, g in zip(leaves, grads, strict=True)]


def weighted_sum(weights: Sequence[Any], margins: Sequence[Any]) -> float:
    """``sum(weights * margins)`` over every play: the level, with :func:`level_weights`."""
    return sum(float((w * m.detach().float()).sum()) for w, m in zip(weights, margins, strict=True))


def weighted_parts(
    model: Any,
    reads: DecisionReads,
    weights: Sequence[Any],
    answers: tuple[int, int],
    head: DecisionHead | None = None,
) -> Iterator[Any]:
    """Per play with a weight, ``sum(weights * margins)`` over its decisions, with grad: one forward
    pass each without dropout, so that each graph can go before the next is built."""
    with dropout_off(model):
        for play, ids in enumerate(reads.sequences):
            if ids and bool(weights[play].any()):
                yield (weights[play] * margins_at(model, ids, reads.rows(play), answers, head)).sum()


def weighted_level(
    model: Any,
    reads: DecisionReads,
    weights: Sequence[Any],
    answers: tuple[int, int],
    head: DecisionHead | None = None,
) -> float:
    """``sum(weights * margins)`` under ``model`` (and ``head``), without grad, reading only the
    plays with a weight."""
    import torch

    with torch.no_grad():
        return sum(float(part) for part in weighted_parts(model, reads, weights, answers, head))


def backward_weighted(model: Any, reads: DecisionReads, weights: Sequence[Any], answers: tuple[int, int]) -> None:
    """Add the gradient of ``sum(weights * margins)`` over every play to ``model``'s ``.grad``, one
    play at a time: the decision loss of plays that are not in TRL's loss passes."""
    for part in weighted_parts(model, reads, weights, answers):
        part.backward()


def reset_level(
    model: Any, reads: DecisionReads, weights: Sequence[Any], target: float, answers: tuple[int, int]
) -> float:
    """Move ``model``'s trainable weights one step along the gradient of the level
    (``sum(weights * margins)`` over ``reads``), the length that brings it to ``target`` to first
    order, and the shortest step that does. One forward and backward pass per play with weight;
    returns the level before the step."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    gradient = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    level = 0.0
    for part in weighted_parts(model, reads, weights, answers):
        level += float(part.detach())
        for total, grad in zip(gradient, torch.autograd.grad(part, params, allow_unused=True), strict=True):
            if grad is not None:
                total += grad.float()
    norm = sum(float(g.square().sum()) for g in gradient)
    if norm > 0:
        with torch.no_grad():
            for p, g in zip(params, gradient, strict=True):
                p.add_((g * ((target - level) / norm)).to(p.dtype))
    return level


def _means_by(
    margins: Sequence[Any], groups: Sequence[int], group_size: int, by: Literal["group", "reply"]
) -> dict[int, tuple[list[int], Any]]:
    """Per level (0 alone for ``by="group"``, the reply's index for ``"reply"``), the groups that
    count at it and their mean margins there, in the order of ``groups``: a group's mean over every
    decision its plays wrote, or over their n-th decisions; a group whose plays never reached a
    reply does not count at that reply's level."""
    import torch

    levels: dict[int, tuple[list[int], list[Any]]] = {}
    for g in groups:
        plays = [m.float() for m in margins[g * group_size : (g + 1) * group_size]]
        if by == "group":
            at = {0: torch.cat(plays).mean()}
        else:
            at = {n: torch.stack([m[n] for m in plays if len(m) > n]).mean() for n in range(max(map(len, plays)))}
        for n, mean in at.items():
            levels.setdefault(n, ([], []))
            levels[n][0].append(g)
            levels[n][1].append(mean)
    return {n: (members, torch.stack(means)) for n, (members, means) in sorted(levels.items())}


def _sides(groups: Sequence[int], means: Any, verdicts: Sequence[float]) -> tuple[list[Any], list[Any]]:
    """The means of the groups where refusing won, and of those where acting won."""
    refusing = [mean for g, mean in zip(groups, means, strict=True) if verdicts[g] > 0]
    acting = [mean for g, mean in zip(groups, means, strict=True) if verdicts[g] < 0]
    return refusing, acting


@contextmanager
def last_hidden_states(model: Any) -> Iterator[list[Any]]:
    """The final hidden states of each forward pass ``model`` makes inside the block (the decoder's
    output, which the LM head reads), with grad; TRL's fused LM head never builds full logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    captured: list[Any] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = base.get_decoder().register_forward_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


def hidden_margins(model: Any, hidden: Any, rows: Sequence[int], answers: tuple[int, int]) -> Any:
    """``logit(" No") - logit(" Yes")`` from one sequence's final hidden states at ``rows``."""
    return decision_margins(model, hidden[list(rows)], answers)
