"""A tiny random Llama with a byte-level BPE tokenizer and a ChatML template, built in seconds.

Tests of the HF agent and the trainer use it instead of a real model: no download, and the
embedded SmolLM2 is not needed. Its replies are gibberish, which is all those tests need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers

from mosaic_gym import ToolEnv
from mosaic_gym.train.config import TrainConfig, from_dict
from tests.chat_template import CHATML, END, START


def _tokenizer() -> Any:
    """Byte-level BPE (any text round-trips) trained on the env's own prompts, with ChatML."""
    env = ToolEnv("files", split="all")
    corpus = []
    for seed in range(8):
        _, info = env.reset(seed=seed)
        corpus += [m["content"] for m in info["messages"]]
        corpus.append(env.step("hello")[0])
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=[END, START],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=END,
        pad_token=END,
        additional_special_tokens=[START],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(vocab: int, hidden: int = 32, seed: int = 0, **config: Any) -> Any:
    """A two-layer Llama whose end-of-turn and padding token is id 0; ``config`` overrides settings."""
    torch.manual_seed(seed)
    settings = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 2 * hidden,
        "max_position_embeddings": 8192,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "bos_token_id": None,
        "initializer_range": 0.2,  # 10x the default: replies depend on the context, padding included
    }
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**settings, **config}))


def build_tiny_model(folder: Path) -> Path:
    """Save the tiny random Llama and its tokenizer as a local model folder."""
    tokenizer = _tokenizer()
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 0
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(model: Path, **rl: Any) -> TrainConfig:
    """Settings that train the tiny model in seconds: one suite, two-step episodes, two steps per stage."""
    return from_dict(
        {
            "model": str(model),
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
            "lora": {"r": 4, "alpha": 8},
            "episodes": {"envs": ["files"], "max_steps": 2, "max_new_tokens": 16},
            "sft": {"steps": 2, "instances_per_template": 1, "batch_size": 2, "max_length": 8192},
            "rl": {"steps": 2, "group_size": 2, "groups_per_step": 1, "save_steps": 1, "rollout_batch_size": 4, **rl},
            "probe": {"episodes_per_kind": 1},
        }
    )
