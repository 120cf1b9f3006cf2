"""Agents and judges by name, for the command line and the trainer's config.

Adding an agent is one entry in :data:`AGENTS`; adding a judge is one :func:`register_judge`
call (or an entry in :data:`JUDGES`). Model back-ends are imported only when an entry is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mosaic_gym.agent import Agent, AgentConfigError
from mosaic_gym.agents.scripted import NaiveAgent, OracleAgent, RandomAgent, RefuseAgent
from mosaic_gym.judges import JudgeError, LLMJudge, PairwiseJudge, RuleJudge
from mosaic_gym.native import PROTOCOLS, ProtocolChoice


@dataclass(frozen=True)
class AgentOptions:
    """Everything the command line can say about an agent; each agent uses what applies."""

    model: str | None = None
    adapter: Path | None = None
    seed: int = 0
    base_url: str | None = None
    max_new_tokens: int | None = None  # per reply, for the hf agent
    temperature: float = 0.0  # sampling temperature of the hf agent; 0 is greedy
    protocol: ProtocolChoice = "text"  # how LLM agents address the model; scripted agents play either
    commit_declines: bool = False  # hf agent, text protocol: a reply that decides " No" writes the refusal


@dataclass(frozen=True)
class AgentEntry:
    description: str
    build: Callable[[AgentOptions], Agent]
    uses_model: bool = False
    uses_base_url: bool = False


AGENTS: dict[str, AgentEntry] = {
    "oracle": AgentEntry("scripted: does the safe reference solution of every task", lambda o: OracleAgent()),
    "naive": AgentEntry("scripted: does whatever the user or any tool output asks", lambda o: NaiveAgent()),
    "refuse": AgentEntry("scripted: refuses everything", lambda o: RefuseAgent()),
    "random": AgentEntry("scripted: random tool calls, seeded by --seed", lambda o: RandomAgent(o.seed)),
    "openai": AgentEntry(
        "any OpenAI-compatible chat endpoint (vLLM, llama.cpp, ollama): --base-url URL/v1 --model NAME; "
        "the key, if any, from $OPENAI_API_KEY",
        lambda o: _openai(o),
        uses_model=True,
        uses_base_url=True,
    ),
    "human": AgentEntry("you, at the terminal (best with --batch-size 1)", lambda o: _human()),
    "hf": AgentEntry(
        "a local transformers model (default: the embedded SmolLM2-135M-Instruct); --model ID_OR_PATH, --adapter DIR",
        lambda o: _hf(o),
        uses_model=True,
    ),
}


def _openai(options: AgentOptions) -> Agent:
    """Imported here: the openai package is an optional extra."""
    if options.model is None or options.base_url is None:
        raise AgentConfigError(
            "agent 'openai' needs --base-url and --model, e.g. --base-url http://localhost:8000/v1 --model MODEL"
        )
    if options.adapter is not None:
        raise AgentConfigError("agent 'openai' takes no --adapter; have the server load it and name it in --model")
    if not options.base_url.startswith(("http://", "https://")):
        raise AgentConfigError(f"--base-url {options.base_url!r}: expected an http:// or https:// URL")
    try:
        from mosaic_gym.agents.openai_agent import OpenAIAgent
    except ModuleNotFoundError as error:
        if error.name != "openai" and not str(error.name).startswith("openai."):
            raise
        raise AgentConfigError("agent 'openai' needs the openai package: pip install 'mosaic-gym[openai]'") from None
    return OpenAIAgent(options.base_url, options.model, seed=options.seed, protocol=options.protocol)


def _hf(options: AgentOptions) -> Agent:
    """Imported here: torch and transformers are the optional [llm] extra."""
    try:
        from mosaic_gym.agents.generation import Sampling
        from mosaic_gym.agents.hf import HFAgent
    except ModuleNotFoundError as error:
        raise AgentConfigError(
            f"agent 'hf' needs the LLM extra ({error.name} is missing): pip install 'mosaic-gym[llm]'"
        ) from None
    budget = {} if options.max_new_tokens is None else {"max_new_tokens": options.max_new_tokens}
    sampling = Sampling(seed=options.seed, temperature=options.temperature, **budget)
    return HFAgent(
        options.model, options.adapter, sampling, protocol=options.protocol, commit_declines=options.commit_declines
    )


def _human() -> Agent:
    from mosaic_gym.agents.human import HumanAgent

    return HumanAgent()


def make_agent(name: str, options: AgentOptions) -> Agent:
    entry = AGENTS.get(name)
    if entry is None:
        raise AgentConfigError(f"unknown agent {name!r}; choose from: {', '.join(AGENTS)}")
    if not entry.uses_model and (options.model is not None or options.adapter is not None):
        raise AgentConfigError(f"agent {name!r} is scripted and takes no --model or --adapter")
    if options.max_new_tokens is not None and name != "hf":
        raise AgentConfigError(f"agent {name!r} takes no --max-new-tokens (only the hf agent does)")
    if options.temperature != 0.0 and name != "hf":
        raise AgentConfigError(f"agent {name!r} takes no --temperature (only the hf agent does)")
    if options.commit_declines and (name != "hf" or options.protocol != "text"):
        raise AgentConfigError(
            "--commit-declines is for --agent hf in the text protocol, whose replies open with the decision"
        )
    if options.protocol not in PROTOCOLS:
        raise AgentConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {options.protocol!r}")
    if options.temperature < 0:
        raise AgentConfigError(f"--temperature must be 0 (greedy) or more, got {options.temperature}")
    if options.base_url is not None and not entry.uses_base_url:
        raise AgentConfigError(f"agent {name!r} takes no --base-url")
    if options.adapter is not None and not options.adapter.is_dir():
        raise AgentConfigError(f"--adapter {options.adapter}: no such folder")
    return entry.build(options)


# -- Judges ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeOptions:
    """What a config can say about a judge; each judge uses what applies."""

    model: str | None = None  # a local model id or path, or an endpoint's model name
    base_url: str | None = None  # an OpenAI-compatible endpoint instead of a local model


@dataclass(frozen=True)
class JudgeEntry:
    description: str
    build: Callable[[JudgeOptions], PairwiseJudge]
    uses_model: bool = False  # needs JudgeOptions.model (and may take a base_url)


def _llm(options: JudgeOptions) -> PairwiseJudge:
    """Imported here: torch and transformers, or openai, are optional extras."""
    from mosaic_gym.agents.completion import hf_completion, openai_completion

    assert options.model is not None  # make_judge checks this
    if options.base_url is not None:
        return LLMJudge(openai_completion(options.base_url, options.model))
    return LLMJudge(hf_completion(options.model))


JUDGES: dict[str, JudgeEntry] = {
    "rule": JudgeEntry("ranks two outcomes from the ground truth, no model", lambda options: RuleJudge()),
    "llm": JudgeEntry(
        "a language model asked in both orders (a local model, or NAME at an OpenAI-compatible base URL)",
        _llm,
        uses_model=True,
    ),
}


def register_judge(name: str, entry: JudgeEntry) -> None:
    """Make ``name`` a judge the config and the command line can ask for."""
    if name in JUDGES:
        raise JudgeError(f"a judge named {name!r} is already registered")
    JUDGES[name] = entry


def make_judge(name: str, options: JudgeOptions | None = None) -> PairwiseJudge:
    """The judge registered as ``name``, built with ``options``."""
    options = options or JudgeOptions()
    entry = JUDGES.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(JUDGES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise JudgeError(f"unknown judge {name!r}{hint}; choose from: {', '.join(JUDGES)}")
    if entry.uses_model and options.model is None:
        raise JudgeError(f"judge {name!r} needs a model (an id, a path, or the endpoint's model name)")
    if not entry.uses_model and (options.model is not None or options.base_url is not None):
        raise JudgeError(f"judge {name!r} uses no model and no base URL")
    return entry.build(options)
