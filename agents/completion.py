"""Model back-ends that turn a prompt into text, for anything that asks a model one question:
the LLM judge (:class:`mosaic_gym.judges.LLMJudge` takes any ``complete(prompt) -> text``).

They live with the agents' back-ends because they load models the same way: a local
transformers model through :func:`mosaic_gym.agents.hf.load_model`, or an OpenAI-compatible
endpoint through :func:`mosaic_gym.agents.openai_agent.endpoint_client`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosaic_gym.agent import AgentConfigError

Complete = Callable[[str], str]


def hf_completion(
    model: str | None = None,
    *,
    adapter: Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int = 16,
) -> Complete:
    """A local transformers model (default: the embedded SmolLM2-135M), greedy, with its chat template."""
    from mosaic_gym.agents.hf import load_model

    network, tokenizer = load_model(model, adapter, device, dtype)
    return _greedy(network, tokenizer, max_new_tokens)


def openai_completion(
    base_url: str,
    model: str,
    *,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    max_retries: int = 2,
    max_tokens: int = 16,
) -> Complete:
    """Any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, ollama), at temperature 0."""
    try:
        import openai  # noqa: F401  (the optional extra: missing is a one-line error, not a traceback)
    except ImportError:
        raise AgentConfigError(
            "the OpenAI-compatible back-end needs the openai package: pip install 'mosaic-gym[openai]'"
        ) from None
    from mosaic_gym.agents.openai_agent import endpoint_client

    client = endpoint_client(base_url, api_key_env, timeout, max_retries)

    def complete(prompt: str) -> str:
        response = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=max_tokens
        )
        return (response.choices[0].message.content or "") if response.choices else ""

    return complete


def _greedy(network: Any, tokenizer: Any, max_new_tokens: int) -> Complete:
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def complete(prompt: str) -> str:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(network.device)
        with torch.inference_mode():
            output = network.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
        return str(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True))

    return complete
