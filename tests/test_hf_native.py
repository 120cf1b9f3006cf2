"""HFAgent in the native protocol: a tiny model built here whose chat template takes ``tools=``.

The random model's replies are gibberish, so one test scripts its generations (the oracle's
actions, written in the Hermes format the template teaches) and checks that native episodes
end exactly as the oracle's do; the prompt rendering, the reading of the format by
transformers' response parsing and the env are all the real ones. The others read each
template family's format, and run the unscripted model through eval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mosaic_gym import Action, ToolEnv  # noqa: E402
from mosaic_gym.agent import AgentConfigError, Turn  # noqa: E402
from mosaic_gym.agents.generation import Generation, Sampling  # noqa: E402
from mosaic_gym.agents.hf import HFAgent  # noqa: E402
from mosaic_gym.agents.hf_native import NativeChat  # noqa: E402
from mosaic_gym.agents.scripted import OracleAgent  # noqa: E402
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval  # noqa: E402
from mosaic_gym.native import REFUSE_TOOL, NativeCall, NativeReply  # noqa: E402
from mosaic_gym.rollout import EpisodeSpec, rollout  # noqa: E402
from tests.chat_template import CHATML_TOOLS  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402

HERMES_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
LLAMA_PROMPT = (
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)
MISTRAL_PROMPT = "[INST] hi [/INST]"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama of ``tiny_model``, with a chat template that takes tools=."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-tools"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHATML_TOOLS
    tokenizer.save_pretrained(folder)
    return folder


def hermes(action: Action) -> str:
    """An action as a Hermes/Qwen model writes it: reasoning, then a <tool_call> or the answer."""
    head = f"<think>{action.plan}</think>\n" + (
        f"<safety_thoughts>{action.safety_thoughts}</safety_thoughts>\n" if action.safety_thoughts else ""
    )
    if action.kind == "answer":
        return head + str(action.message)
    name, arguments = (
        (REFUSE_TOOL, {"reason": action.message}) if action.kind == "refuse" else (action.tool, action.arguments)
    )
    return head + f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class OracleScript:
    """Stands in for the model's sampling: each prompt gets the oracle's next action, in Hermes text."""

    def __init__(self, agent: HFAgent) -> None:
        self.agent = agent
        self.oracle = OracleAgent()
        self.turns: list[Turn] = []
        self.prompts: list[str] = []
        act = agent.act_batch
        agent.privileged = True  # type: ignore[attr-defined]  # the scripted generator replays the oracle

        def act_batch(turns: Sequence[Turn]) -> list[Any]:
            self.turns = list(turns)
            return act(turns)

        def scripted(prompts: list[list[int]], seeds: list[int]) -> list[Generation]:
            assert len(prompts) == len(self.turns)
            self.prompts += [agent.tokenizer.decode(p) for p in prompts]
            texts = [hermes(action) for action in self.oracle.act_batch(self.turns)]  # type: ignore[arg-type]
            eos = agent.tokenizer.eos_token_id
            return [Generation([*agent.transcripts.tokens(t), eos], t, "eos") for t in texts]

        agent.act_batch = act_batch  # type: ignore[method-assign]
        agent.generator.generate = scripted  # type: ignore[method-assign]


def test_native_episodes_of_a_tools_template_end_as_the_oracles_do(tiny_tools: Path) -> None:
    agent = HFAgent(model=str(tiny_tools), protocol="native", sampling=Sampling(max_new_tokens=64))
    script = OracleScript(agent)
    tasks = ["files.dox_ex_partner", "files.share_slides", "files.readme_summary_injection", "files.ssh_pubkey_privacy"]
    specs = [EpisodeSpec(seed=seed, task=task) for seed, task in enumerate(tasks)]
    native = {
        t.spec.task: t for t in rollout(agent, lambda: ToolEnv("files", split="all", protocol="native"), specs, 3)
    }
    text = {t.spec.task: t for t in rollout(OracleAgent(), lambda: ToolEnv("files", split="all"), specs, 3)}
    assert {t.outcome.kind for t in text.values() if t.outcome} == {"benign", "harmful", "injection", "privacy"}
    for task in tasks:
        mine, reference = native[task].outcome, text[task].outcome
        assert mine is not None and reference is not None
        assert mine.model_dump(exclude={"agent_tokens"}) == reference.model_dump(exclude={"agent_tokens"})
        assert mine.format_errors == 0 and mine.agent_tokens and mine.agent_tokens > 0
        assert [s.action for s in native[task].steps] == [s.action for s in text[task].steps]
    assert text["files.dox_ex_partner"].outcome.refused  # type: ignore[union-attr]
    # The prompts carried the tools (refuse among them) and the chat in the template's format.
    assert all("<tools>" in p and '"name": "refuse"' in p for p in script.prompts)
    later = [p for p in script.prompts if "<tool_response>" in p]
    assert later and all('<tool_call>\n{"name": ' in p for p in later), "arguments rendered as JSON objects"


@pytest.mark.parametrize(
    ("prompt", "text", "expected"),
    [
        (
            HERMES_PROMPT,
            '<think>Two at once.</think>\nOK.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>',
            NativeReply("OK.", "Two at once.", (NativeCall("a", '{"x": 1}'), NativeCall("b", "{}"))),
        ),
        (HERMES_PROMPT + "<think>\n", "Prefilled.</think>\n\nHello.", NativeReply("Hello.", "Prefilled.")),
        (
            LLAMA_PROMPT,
            '<|python_tag|>{"name": "a", "parameters": {"x": 1}}',
            NativeReply("", None, (NativeCall("a", '{"x": 1}'),)),
        ),
        (LLAMA_PROMPT, "Just text.", NativeReply("Just text.")),
        (
            MISTRAL_PROMPT,
            '[TOOL_CALLS] [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]',
            NativeReply("", None, (NativeCall("a", '{"x": 1}'), NativeCall("b", "{}"))),
        ),
    ],
)
def test_each_family_format_is_read_into_calls_reasoning_and_text(
    tiny_tools: Path, prompt: str, text: str, expected: NativeReply
) -> None:
    chat = _chat(
        tiny_tools,
        {HERMES_PROMPT: CHATML_TOOLS, LLAMA_PROMPT: LLAMA_LIKE, MISTRAL_PROMPT: MISTRAL_LIKE}[
            prompt.split("<think>")[0]
        ],
    )
    ids = chat.tokenizer(text, add_special_tokens=False)["input_ids"]
    reply = chat.read(prompt, ids, ended_with_eos=False)
    assert reply == NativeReply(expected.content, expected.reasoning, expected.tool_calls, tokens=len(ids))


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "a", "arguments": {"x": </tool_call>',
        '<tool_call>\n["not", "a", "call"]\n</tool_call>',
        '{"name": "a", "parameters": {"x": ',
    ],
)
def test_malformed_markup_stays_in_the_text_where_the_env_counts_a_format_error(tiny_tools: Path, text: str) -> None:
    template = LLAMA_LIKE if text.startswith("{") else CHATML_TOOLS
    prompt = LLAMA_PROMPT if text.startswith("{") else HERMES_PROMPT
    chat = _chat(tiny_tools, template)
    reply = chat.read(prompt, chat.tokenizer(text, add_special_tokens=False)["input_ids"], ended_with_eos=False)
    assert reply.content == text and reply.tool_calls == ()
    env = ToolEnv("files", split="all", protocol="native")
    env.reset(seed=0)
    observation, _, terminated, _, info = env.step(reply)
    assert (
        not terminated and info["format_error"] and observation.startswith("Format error: The reply writes a tool call")
    )


def test_models_whose_template_takes_no_tools_or_an_unknown_format_are_one_line_errors(tiny_tools: Path) -> None:
    with pytest.raises(AgentConfigError, match=r"chat template takes no tools=; use --protocol text"):
        _chat(tiny_tools, "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(AgentConfigError, match=r"none of Hermes/Qwen, Mistral, Llama 3.x"):
        _chat(tiny_tools, "{{ tools }}{% for m in messages %}<call>{{ m['content'] }}{% endfor %}")


def test_the_untrained_tiny_model_plays_native_episodes_through_eval(tiny_tools: Path, tmp_path: Path) -> None:
    config = EvalConfig(
        agent="hf",
        model=str(tiny_tools),
        episodes=2,
        envs=("mosaic_gym/Files-v0",),
        max_new_tokens=12,
        protocol="native",
    )
    metrics = run_eval(config, tmp_path)
    assert metrics["run"]["protocol"] == "native" and metrics["overall"]["episodes"] == 2
    for record in load_records(tmp_path / TRAJECTORIES).values():
        assert record["protocol"] == "native" and record["outcome"]["agent_tokens"] > 0
        for step in record["steps"]:
            assert step["reply"] is not None and (step["format_error"] or step["action"]["kind"] == "answer")


LLAMA_LIKE = "{{ tools }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}{% endfor %}<|python_tag|>"
MISTRAL_LIKE = "{{ tools }}{% for m in messages %}[INST]{{ m['content'] }}[/INST]{% endfor %}[TOOL_CALLS]"


def _chat(folder: Path, template: str) -> NativeChat:
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = template
    return NativeChat(tokenizer, "tiny")
