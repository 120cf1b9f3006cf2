"""An episode as one token sequence, the way a chat model sees it.

The prompt comes from the chat template; each reply is the generated ids exactly as sampled
(never decoded and re-tokenized); each observation is whatever the chat template puts between
the reply and the next generation prompt. The agent mask marks the reply tokens. The HF agent
builds its context with this, and the trainer's demonstrations are built the same way, so the
warm start learns from exactly the token layout the model later acts in.
"""

from __future__ import annotations

from typing import Any

from mosaic_gym.agent import TokenTrace


class Transcript:
    """The token ids of one episode so far and which of them the agent produced."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.ended_with_eos = False

    def add(self, ids: list[int], agent: bool) -> None:
        self.ids.extend(ids)
        self.mask.extend([int(agent)] * len(ids))

    def trace(self) -> TokenTrace:
        return TokenTrace(tuple(self.ids), tuple(self.mask))


class TranscriptBuilder:
    """Turns an episode's chat messages into :class:`Transcript` tokens with one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def start(self, messages: list[dict[str, str]]) -> Transcript:
        """A transcript holding the prompt: the messages up to the first generation prompt."""
        transcript = Transcript()
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        transcript.add(self.tokens(prompt), agent=False)
        return transcript

    def add_observation(self, transcript: Transcript, messages: list[dict[str, str]]) -> None:
        """Append what follows the agent's last reply (``messages[-2]``) up to the next generation prompt."""
        transcript.add(self.tokens(self._between(messages, transcript.ended_with_eos)), agent=False)

    def tokens(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _between(self, messages: list[dict[str, str]], ended_with_eos: bool) -> str:
        before = self.tokenizer.apply_chat_template(messages[:-1], tokenize=False)
        after = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if not after.startswith(before):
            raise RuntimeError("this model's chat template does not extend a conversation by appending text")
        # The reply ends where a rendering with a mark appended to it departs from ``before``. (Looking
        # for the reply's text instead goes wrong when it is empty or also occurs in the closing.)
        reply = messages[-2]
        marked = self.tokenizer.apply_chat_template(
            [*messages[:-2], {**reply, "content": reply["content"] + "\x00"}], tokenize=False
        )
        end_of_reply = next((i for i, (a, b) in enumerate(zip(before, marked, strict=False)) if a != b), len(before))
        closing = before[end_of_reply:]
        eos = self.tokenizer.eos_token or ""
        if ended_with_eos and eos and closing.startswith(eos):
            closing = closing[len(eos) :]  # the model already generated the end-of-turn token
        return closing + after[len(before) :]
