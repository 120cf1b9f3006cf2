"""An agent backed by any OpenAI-compatible chat endpoint: vLLM, llama.cpp's server, ollama.

In the text protocol (the default) the env's chat is sent as is, except that ``tool`` messages
become ``user`` messages: that protocol puts tool calls in the reply text, so those messages
have no ``tool_call_id`` and strict servers would reject them. Generation stops at the closing
tag of the action, which servers strip from the text; the agent puts it back so the reply parses.

In the native protocol the request carries the env's tool schemas as ``tools=``, the chat goes
out in OpenAI's format (assistant ``tool_calls``, ``tool`` messages with their ids), and the
reply comes back as a :class:`NativeReply`: its text, its ``tool_calls``, and the reasoning a
server's reasoning parser put in ``reasoning_content`` (or ``reasoning``).

Every failure of the endpoint (unreachable, unknown model, refused key, timeout) becomes an
:class:`AgentRuntimeError` with a one-line message, and a preflight on construction makes a
wrong URL or model fail before any episode runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

from mosaic_gym.agent import AgentRuntimeError, Turn
from mosaic_gym.native import REFUSE_SCHEMA, NativeCall, NativeReply, ProtocolChoice
from mosaic_gym.protocol import ACTION_BLOCKS, Action

STOP = [f"</{block}>" for block in ACTION_BLOCKS]
PLACEHOLDER_KEY = "not-needed"  # local servers ignore the key, but the client insists on one


def endpoint_client(base_url: str, api_key_env: str, timeout: float, max_retries: int) -> openai.OpenAI:
    """A client for an OpenAI-compatible server; the key from ``$api_key_env``, if set."""
    return openai.OpenAI(
        base_url=base_url,
        api_key=os.environ.get(api_key_env) or PLACEHOLDER_KEY,
        timeout=timeout,
        max_retries=max_retries,
    )


class OpenAIAgent:
    """Sends each turn's chat to ``base_url`` and returns the model's text, many turns at once."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 2,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int = 1024,
        seed: int | None = None,
        concurrency: int = 8,
        preflight: bool = True,
        protocol: ProtocolChoice = "text",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {max_retries}")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = seed
        self.concurrency = concurrency
        self.protocol = protocol
        # Completion tokens per episode, keyed by id(env); reset when an episode starts.
        self.tokens_used: dict[int, int] = {}
        self._client = endpoint_client(base_url, api_key_env, timeout, max_retries)
        if preflight:
            self._preflight()

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action | NativeReply]:
        """One request per turn, at most ``concurrency`` in flight; replies in the turns' order."""
        if not turns:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(turns))) as pool:
            futures = [pool.submit(self._request, turn) for turn in turns]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()  # no new requests once one has failed; running ones end by timeout
                raise
        replies: list[str | Action | NativeReply] = []
        for turn, (reply, tokens) in zip(turns, results, strict=True):
            key = turn.slot
            if turn.step == 0:
                self.tokens_used[key] = 0
            self.tokens_used[key] = self.tokens_used.get(key, 0) + tokens
            replies.append(reply)
        return replies

    def _request(self, turn: Turn) -> tuple[str | NativeReply, int]:
        """The reply (text with its closing tag restored, or a NativeReply) and its completion tokens."""
        if self.protocol == "native":
            response = self._complete(native_messages(turn.messages), tools=turn.tools)
            return native_reply(response), _completion_tokens(response)
        response = self._complete(convert_messages(turn.messages), stop=STOP)
        return _reply_text(response), _completion_tokens(response)

    def _complete(self, messages: list[dict[str, Any]], **request: Any) -> ChatCompletion:
        if self.top_p is not None:
            request["top_p"] = self.top_p
        if self.seed is not None:
            request["seed"] = self.seed
        try:
            return self._client.chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                **request,
            )
        except openai.OpenAIError as error:
            raise self._explain(error) from None

    def _preflight(self) -> None:
        """Fail now, naming the URL and model, rather than after the first batch of episodes."""
        served: list[str] | None
        try:
            served = [model.id for model in self._client.models.list()]
        except openai.NotFoundError:
            served = None  # some servers have no model listing; the request below decides
        except openai.OpenAIError as error:
            raise self._explain(error) from None
        if served is not None and self.model in served and self.protocol == "text":
            return
        # Not listed: llama.cpp serves whatever name it is asked for and ollama lists tags, so ask.
        # Natively, always ask with a tool, so that a server without tool calling fails now.
        tools: dict[str, Any] = {"tools": [REFUSE_SCHEMA]} if self.protocol == "native" else {}
        try:
            self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1, **tools
            )
        except openai.NotFoundError:
            if served is None:
                raise AgentRuntimeError(
                    f"no OpenAI-compatible API at {self.base_url} (GET /models and POST /chat/completions "
                    "answered 404); the base URL usually ends in /v1"
                ) from None
            listing = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "") if served else "none"
            raise AgentRuntimeError(
                f"model {self.model!r} not found at {self.base_url}; it serves: {listing}"
            ) from None
        except openai.OpenAIError as error:
            raise self._explain(error) from None

    def _explain(self, error: openai.OpenAIError) -> AgentRuntimeError:
        """One line saying what went wrong with which endpoint and model, and what to try."""
        where = f"{self.base_url} (model {self.model!r})"
        if isinstance(error, openai.APITimeoutError):
            return AgentRuntimeError(f"no reply from {where} within {self.timeout:g} s; is the server overloaded?")
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            return AgentRuntimeError(f"cannot reach {where}: {_one_line(str(cause) or type(cause).__name__)}")
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            return AgentRuntimeError(
                f"{where} refused the API key ({error.status_code}); set it in ${self.api_key_env}"
            )
        if isinstance(error, openai.NotFoundError):
            return AgentRuntimeError(f"model {self.model!r} not found at {self.base_url}: {_server_message(error)}")
        if isinstance(error, openai.APIStatusError):
            message = _server_message(error)
            hint = ""
            if self.protocol == "native" and error.status_code == 400 and "tool" in message.lower():
                hint = " (--protocol native needs a server with tool calling on; see docs/agents.md)"
            return AgentRuntimeError(f"{where} answered {error.status_code}: {message}{hint}")
        return AgentRuntimeError(f"request to {where} failed: {_one_line(str(error))}")


def convert_messages(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The env's chat in roles every server accepts: tool output goes back as a user message."""
    converted = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "tool":
            converted.append({"role": "user", "content": f"Tool output ({message.get('name', 'tool')}):\n{content}"})
        else:
            converted.append({"role": role, "content": content})
    return converted


def native_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The env's native chat in the fields the API defines: reasoning stays out of the history
    (servers expect it so), and a ``tool`` message carries its call id, not a name."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "tool":
            converted.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]})
        elif message["role"] == "assistant":
            keep = ("role", "content", "tool_calls")
            converted.append({key: message[key] for key in keep if key in message})
        else:
            converted.append({"role": message["role"], "content": message["content"]})
    return converted


def native_reply(response: ChatCompletion) -> NativeReply:
    """The first choice as a NativeReply; no choice at all is an empty reply (a format error)."""
    tokens = _completion_tokens(response)
    if not response.choices:
        return NativeReply(tokens=tokens)
    message = response.choices[0].message
    extra = message.model_extra or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")  # vLLM's and ollama's names
    calls = tuple(
        NativeCall(call.function.name or "", call.function.arguments or "", call.id or "")
        for call in message.tool_calls or []
        if isinstance(call, ChatCompletionMessageFunctionToolCall)  # custom (free-text) tools are never offered
    )
    return NativeReply(
        content=message.content or "",
        reasoning=reasoning if isinstance(reasoning, str) else None,
        tool_calls=calls,
        tokens=tokens,
    )


def restore_stop(text: str, finish_reason: str | None) -> str:
    """Put back the closing tag the server stripped when it stopped on it.

    Only for ``finish_reason == "stop"``: a reply cut off by the token limit stays unclosed,
    so the env reports it as the format error it is.
    """
    if finish_reason != "stop":
        return text
    opened = [(text.rfind(f"<{block}>"), block) for block in ACTION_BLOCKS]
    position, block = max(opened)
    if position < 0 or f"</{block}>" in text[position:]:
        return text
    return text + f"</{block}>"


def _reply_text(response: ChatCompletion) -> str:
    if not response.choices:
        return ""
    choice = response.choices[0]
    return restore_stop(choice.message.content or "", choice.finish_reason)


def _completion_tokens(response: ChatCompletion) -> int:
    usage = response.usage
    return int(usage.completion_tokens or 0) if usage is not None else 0


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            return _one_line(str(detail))
    if isinstance(body, str) and body.strip():
        return _one_line(body)
    return _one_line(error.message)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
