"""TRL's fused LM head, made to project only the labelled positions on CPU too.

TRL's trainers score tokens through a fused LM head that never builds the logits. On CUDA it
projects only the positions whose next token is labelled; elsewhere it projects every
position, to keep tile shapes fixed for compilers that would recompile on each new count
(Neuron). Eager CPU compiles nothing, and there most positions are the prompt: a starter
demonstration is ~980 tokens, ~185 of them the agent's, so four in five projections through
SmolLM2's 49k-word head were thrown away. Projecting the labelled ones only gives the same
loss, made an SFT forward and backward a third faster and halved GRPO's loss passes, which
label the completion only (docs/results.md, "The quick recipe").
"""

from __future__ import annotations

from typing import Any


def project_labelled_positions_only() -> None:
    """Make TRL's fused LM head skip unlabelled positions on CPU; idempotent, and a no-op on a
    TRL that no longer has the switch (it then projects as it chooses, only slower)."""
    from trl.trainer import utils as trl_utils

    switch = getattr(trl_utils, "_use_triton", None)
    if switch is None or getattr(switch, "__module__", None) == __name__:
        return

    def compact_on(device: Any) -> bool:
        return bool(device.type == "cpu" or switch(device))

    trl_utils._use_triton = compact_on
