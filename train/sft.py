"""Stage 1, the warm start: LoRA SFT on the demonstrations with TRL's SFTTrainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosaic_gym.train.config import TrainConfig
from mosaic_gym.train.demos import build_demos
from mosaic_gym.train.policy import last_checkpoint, lora_config, quiet_progress, trainer_args


def run_sft(config: TrainConfig, model: Any, tokenizer: Any, workdir: Path, resume: bool, callbacks: list[Any]) -> Any:
    """Train the warm-start adapter; returns the trainer (its model holds the adapter)."""
    from datasets import Dataset, disable_progress_bars
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()  # TRL's bars for truncating and filtering a few hundred rows: noise

    demos = build_demos(tokenizer, config.episodes, config.sft, config.seed)
    print(f"warm start: {demos.summary()}", flush=True)
    dataset = Dataset.from_list(demos.examples)
    defaults = {
        # similar lengths in a batched pass: less padding
        "train_sampling_strategy": "group_by_length" if config.sft.loss_batch_size > 1 else "random",
        "lr_scheduler_type": "cosine",
        "warmup_steps": config.sft.steps // 20,  # none under 20 steps: a warm-up step trains at rate 0
        "save_steps": max(1, config.sft.steps // 4),
        "save_total_limit": 1,
        "dataset_num_proc": None,
        "packing": False,
    }
    args = SFTConfig(
        **trainer_args(config, "sft", model, workdir, config.sft.loss_batch_size, defaults),
        max_steps=config.sft.steps,
        gradient_accumulation_steps=config.sft.batch_size // config.sft.loss_batch_size,
        learning_rate=config.sft.learning_rate,
        max_length=config.sft.max_length,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=callbacks,
    )
    quiet_progress(trainer, ("loss", "mean_token_accuracy"))
    trainer.train(resume_from_checkpoint=last_checkpoint(workdir) if resume else None)
    return trainer
