"""Balancing what a step's groups push the decision to refuse: the arithmetic, on numbers."""

from __future__ import annotations

import pytest

from mosaic_gym.train.decision_balance import (
    committed_tails,
    decision_positions,
    decision_push,
    decisions_before_refusal,
    weigh_decisions,
)

# Two groups of 3: in the first the refusal won (push +2), in the second both refusals lost
# (push -0.5 - 0.5 = -1). Unbalanced, the step raises P(refuse) for every task by a net +1.
ADVANTAGES = [2.0, -1.0, -1.0, -0.5, -0.5, 1.0]
REFUSED = [True, False, False, True, True, False]


def test_the_push_of_a_group_is_its_refusals_advantage_and_is_reported_unbalanced() -> None:
    push = decision_push(ADVANTAGES, REFUSED, group_size=3, balance=False)
    assert push.advantages == ADVANTAGES
    assert push.stats() == {"decision/push_up": 2.0, "decision/push_down": 1.0, "decision/net_push": 1.0}


def test_balancing_scales_the_stronger_side_down_to_the_weaker() -> None:
    push = decision_push(ADVANTAGES, REFUSED, group_size=3, balance=True)
    assert push.advantages == pytest.approx([1.0, -0.5, -0.5, -0.5, -0.5, 1.0])
    assert push.stats()["decision/net_push"] == 1.0, "the log shows what the step pushed before balancing"
    again = decision_push(push.advantages, REFUSED, group_size=3, balance=False)
    assert again.up == pytest.approx(again.down) == pytest.approx(1.0)


def test_a_side_that_pushes_almost_nothing_is_never_inflated() -> None:
    # A near-tied second group: balancing by scaling it up would multiply its advantages by 1e5.
    tiny = [2.0, -1.0, -1.0, -1e-5, 1.0, -1.0 + 1e-5]
    push = decision_push(tiny, [*REFUSED[:3], True, False, False], group_size=3, balance=True)
    assert max(abs(a) for a in push.advantages) <= 1.0
    assert push.advantages[:3] == pytest.approx([1e-5, -5e-6, -5e-6])
    assert push.advantages[3:] == tiny[3:]


def test_one_sided_steps_keep_no_push_and_neutral_groups_keep_their_advantages() -> None:
    one_way = decision_push(ADVANTAGES[:3] * 2, REFUSED[:3] * 2, group_size=3, balance=True)
    assert one_way.advantages == [0.0] * 6 and one_way.down == 0, "on its own it could only teach a bias"
    # A group without a refusal (or of tied plays) pushes nothing and keeps its advantages.
    mixed = decision_push([*ADVANTAGES, 1.0, 0.0, -1.0], [*REFUSED, False, False, False], 3, balance=True)
    assert mixed.advantages[6:] == [1.0, 0.0, -1.0]


def test_mismatched_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="6 advantages for 5 plays"):
        decision_push(ADVANTAGES, REFUSED[:5], group_size=3, balance=True)
    with pytest.raises(ValueError, match="6 plays do not split into groups of 4"):
        decision_push(ADVANTAGES, REFUSED, group_size=4, balance=True)


def test_the_decision_is_the_token_after_the_question_in_the_plays_own_replies() -> None:
    question = [7, 8]
    ids = [7, 8, 1, 5, 7, 8, 2, 9, 7, 8]
    mask = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    # The second question is inside a tool output (mask 0); the last has no token after it.
    assert decision_positions(ids, mask, question) == [2]
    assert decision_positions([*ids, 3], [*mask, 1], question) == [2, 10]
    with pytest.raises(ValueError, match="no tokens"):
        decision_positions(ids, mask, [])


def test_decision_tokens_carry_the_weight_and_every_other_token_the_plays_advantage() -> None:
    rows = weigh_decisions([1.0, -0.5], [[2], [0, 9]], width=4, weight=10.0)
    assert rows == [[1.0, 1.0, 10.0, 1.0], [-5.0, -0.5, -0.5, -0.5]], "a decision past the width is cut with it"
    with pytest.raises(ValueError, match="2 advantages for the decisions of 1 plays"):
        weigh_decisions([1.0, -0.5], [[2]], width=4, weight=10.0)


def test_a_play_that_refused_after_acting_keeps_its_advantage_off_its_earlier_decisions() -> None:
    positions = [[2, 7, 12], [3], [4, 9]]
    cleared = decisions_before_refusal(positions, [True, True, False])
    assert cleared == [[2, 7], [], []], "the refusal's own decision keeps it; an attempt's decisions all do"
    rows = weigh_decisions([-1.0, 1.0, 0.5], positions, width=14, weight=2.0, cleared=cleared)
    assert rows[0][2] == rows[0][7] == 0.0 and rows[0][12] == -2.0 and rows[0][0] == -1.0
    assert rows[2][4] == rows[2][9] == 1.0


def test_committed_tails_are_the_refusal_after_each_no_and_nothing_else() -> None:
    no, yes, rest = 7, 8, [20, 21, 22]
    # A play that declined at its second decision; one whose " No" was followed by other tokens;
    # one that said " Yes"; and one cut short before its refusal ended.
    completions = [[1, yes, 5, 5, 1, no, *rest, 9], [1, no, 20, 5, 5], [1, yes, *rest], [1, no, 20, 21]]
    positions = [[1, 5], [1], [1], [1]]
    assert committed_tails(completions, positions, no, rest) == [[6, 7, 8], [], [], []]
    cleared = weigh_decisions([1.0], [[5]], width=10, weight=0.0, cleared=[[6, 7, 8]])
    assert cleared == [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
