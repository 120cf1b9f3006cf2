"""The native protocol for a local transformers model: tools through the chat template's
``tools=``, and tool calls read from the model's own format with transformers' response parsing.

Which format a model writes depends on its chat-template family. A tokenizer that ships a
``response_template`` is parsed with it; otherwise the family is told from the chat template
and parsed with one of the response templates below (the format transformers' ``parse_response``
takes): Hermes/Qwen ``<tool_call>{json}</tool_call>`` blocks, Llama 3.x JSON (``{"name": ...,
"parameters": {...}}``, optionally after ``<|python_tag|>``) and Mistral ``[TOOL_CALLS][...]``.
Markup that does not parse is left in the reply's text, where the env counts it as a format
error, as it would a server's unparsed call.
"""

from __future__ import annotations

import json
from typing import Any

from mosaic_gym.agent import AgentConfigError, AgentRuntimeError
from mosaic_gym.native import NativeCall, NativeReply

_CONTENT = {"content": "text"}
HERMES: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "reasoning_content": {"open": "<think>", "close": "</think>", "content": "text"},
        "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>", "repeats": True, "content": "json"},
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", **_CONTENT},
    },
}
LLAMA3: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "fields": {
        # The whole reply is the call, as in the templates' own instructions.
        "tool_calls": {"open_pattern": r"\A\s*(?:<\|python_tag\|>)?\s*(?=\{)", "content": "json"},
        "content": {"close_pattern": r"\s*(?:<\|eot_id\|>|<\|eom_id\|>)", **_CONTENT},
    },
}
MISTRAL: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": ["[/INST]", "[/TOOL_RESULTS]"],
    "fields": {"tool_calls": {"open": "[TOOL_CALLS]", "content": "json"}, "content": {"close": "</s>", **_CONTENT}},
}
# (family, what its chat template holds, its response template); the first match wins.
FAMILIES: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    ("Hermes/Qwen", ("<tool_call>", "<|im_start|>"), HERMES),
    ("Mistral", ("[TOOL_CALLS]", "[/INST]"), MISTRAL),
    ("Llama 3.x", ("<|start_header_id|>",), LLAMA3),
)


def response_template(tokenizer: Any, model: str) -> dict[str, Any]:
    """The tokenizer's own response template, else its family's; a one-line error when neither."""
    shipped = getattr(tokenizer, "response_template", None)
    if isinstance(shipped, dict):
        return shipped
    chat = tokenizer.chat_template
    template = chat.get("tool_use") or chat.get("default") if isinstance(chat, dict) else chat
    if not isinstance(template, str) or "tools" not in template:
        raise AgentConfigError(f"model {model!r}: its chat template takes no tools=; use --protocol text")
    for _, markers, family in FAMILIES:
        if all(marker in template for marker in markers):
            return family
    known = ", ".join(name for name, _, _ in FAMILIES)
    raise AgentConfigError(
        f"model {model!r}: its tool-call format is none of {known}, and its tokenizer has no "
        "response_template to parse it with; use --protocol text"
    )


class NativeChat:
    """Renders an episode's native chat with the chat template and reads replies back."""

    def __init__(self, tokenizer: Any, model: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.template = response_template(tokenizer, model)

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        """The generation prompt for a turn: the chat so far and the tools, as the template writes them."""
        from jinja2 import TemplateError

        try:
            prompt: str = self.tokenizer.apply_chat_template(
                template_messages(messages), tools=tools, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as error:
            raise AgentRuntimeError(f"the chat template of {self.model!r} rejected the chat: {error}") from None
        return prompt

    def read(self, prompt: str, token_ids: list[int], ended_with_eos: bool) -> NativeReply:
        """The reply in ``token_ids``; control tokens (``[TOOL_CALLS]``, ``<|python_tag|>``) are kept."""
        from transformers.utils.chat_parsing import parse_response

        ids = token_ids[:-1] if ended_with_eos else token_ids
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        try:
            message = parse_response(text, self.template, prefix=prompt)
        except (ValueError, KeyError):  # markup that does not parse: the env reads it as a format error
            return NativeReply(content=text, tokens=len(token_ids))
        calls = _calls(message.get("tool_calls"))
        if calls is None:
            return NativeReply(content=text, tokens=len(token_ids))
        reasoning = message.get("reasoning_content")
        return NativeReply(
            content=str(message.get("content") or ""),
            reasoning=reasoning if isinstance(reasoning, str) else None,
            tool_calls=calls,
            tokens=len(token_ids),
        )


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The env's native chat as chat templates take it: a call's arguments as a dict, not JSON text."""
    converted = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [
                {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
                for call in message["tool_calls"]
            ]
            message = {**message, "tool_calls": calls}
        converted.append(message)
    return converted


def _calls(parsed: Any) -> tuple[NativeCall, ...] | None:
    """Calls from parsed markup: OpenAI-style ``{"function": {...}}`` or bare ``{"name", "arguments"}``
    (Llama writes ``parameters``), one or a list of them; None when they are not calls at all."""
    if parsed is None:
        return ()
    items = [parsed] if isinstance(parsed, dict) else parsed
    flat = [inner for item in items for inner in (item if isinstance(item, list) else [item])]
    calls = []
    for item in flat:
        function = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        arguments = function.get("arguments", function.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        calls.append(NativeCall(function["name"], text, str(item.get("id") or "")))
    return tuple(calls)
