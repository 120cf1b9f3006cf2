"""The policy to train: the base model with LoRA (from scratch or the warm start), and its checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from mosaic_gym.agents.hf import load_model, peft_adapter
from mosaic_gym.agents.prefix_cache import weight_versions
from mosaic_gym.train.config import TrainConfig, trl_fields
from mosaic_gym.train.labelled_head import project_labelled_positions_only


def load_base(config: TrainConfig) -> tuple[Any, Any]:
    """(model, tokenizer) with a pad token, ready to be wrapped by peft."""
    project_labelled_positions_only()
    model, tokenizer = load_model(config.model, None, config.device, config.dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False  # training forwards need no cache; generation passes its own
    return model, tokenizer


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def from_warm_start(base: Any, warm_start: Path) -> Any:
    """The warm-start adapter, trainable. Given such a model, TRL's GRPOTrainer keeps a frozen
    copy of it as the KL reference, so the KL term pulls towards the warm-started policy
    rather than towards the base model."""
    return peft_adapter(base, warm_start, trainable=True)


def frozen_copy(model: Any) -> Any:
    """A copy of ``model`` as it is now, in eval mode and without grad: the policy RL started
    from, for losses that compare against it (``rl.decision_level``). Parameters that do not
    train (a LoRA model's base weights) are shared, not copied: they stay what they are."""
    import copy

    frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
    reference = copy.deepcopy(model, memo=frozen).eval()
    reference.requires_grad_(False)
    return reference


class PlayModel:
    """The policy as RL plays sample it: a copy with the adapter merged into its weights, made
    again only once the policy's weights change (never, while ``rl.train_adapter`` is false).
    Sampling runs the plain model's forward: peft's two extra products and casts per adapted
    layer cost a third of a decode step at batch 24 on this CPU. The loss passes still run the
    policy itself; the two differ by one rounding of each merged weight to the model's dtype."""

    def __init__(self) -> None:
        self._merged: Any = None
        self._versions: tuple[int, ...] = ()

    def of(self, policy: Any) -> Any:
        """The merged copy of ``policy``, or ``policy`` itself if it has no adapter."""
        from peft import PeftModel

        if not isinstance(policy, PeftModel):
            return policy
        versions = weight_versions(policy)
        if self._merged is None or versions != self._versions:
            self._merged = _merged_copy(policy)
            self._versions = versions
        return self._merged


def _merged_copy(policy: Any) -> Any:
    import copy

    import torch

    with torch.no_grad():
        merged = copy.deepcopy(policy).merge_and_unload()
    merged.eval().requires_grad_(False)
    return merged


def trainer_args(
    config: TrainConfig,
    stage: Literal["sft", "rl"],
    model: Any,
    workdir: Path,
    batch_size: int = 1,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """TRL settings both stages share: where checkpoints go, logging every step to tensorboard,
    the hardware, and ``batch_size`` sequences per forward pass (by default one: long, uneven
    episodes need no padding, and the logits over a 49k vocabulary stay the memory peak of one
    sequence); then the stage's own ``defaults``; then the config's ``trl:`` entries that this
    stage's TRL config has, which win over both."""
    fields = trl_fields()[stage]
    return {
        **(defaults or {}),
        "output_dir": str(workdir),
        "per_device_train_batch_size": batch_size,
        "logging_steps": 1,
        "report_to": ["tensorboard"],
        "seed": config.seed,
        "bf16": uses_bf16(model),
        "gradient_checkpointing": False,
        "use_cpu": not on_cuda(model),
        **{key: value for key, value in config.trl.items() if key in fields},
    }


def uses_bf16(model: Any) -> bool:
    import torch

    return bool(next(model.parameters()).dtype == torch.bfloat16)


def on_cuda(model: Any) -> bool:
    return bool(next(model.parameters()).device.type == "cuda")


def last_checkpoint(workdir: Path) -> str | None:
    """The newest ``checkpoint-N`` folder a stage left in ``workdir``, to resume from."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(workdir)) if workdir.is_dir() else None


def quiet_progress(trainer: Any, shown: Sequence[str]) -> None:
    """One progress bar per stage, showing the ``shown`` metrics of the last step, instead of the
    default bar that prints every step's whole metrics dict under it (they all still go to
    tensorboard, and RL's to its step log)."""
    from transformers.trainer_callback import ProgressCallback

    class _Bar(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            if state.is_world_process_zero and self.training_bar is not None and logs:
                values = {key.rsplit("/", 1)[-1]: f"{logs[key]:.3g}" for key in shown if key in logs}
                if values:
                    self.training_bar.set_postfix(values)

    if any(type(callback) is ProgressCallback for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_Bar())
