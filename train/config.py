"""The trainer's configuration: YAML recipes plus ``--section.key value`` overrides.

Every setting lives in one dataclass tree with defaults; a recipe only states what differs.
Inconsistent settings fail in ``__post_init__`` with a message naming the key, before any
model is loaded, so a typo costs seconds rather than an hour of training.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mosaic_gym.agentdojo import AgentDojoMissing
from mosaic_gym.catalog import ENV_IDS, check_available
from mosaic_gym.env import TIER_CHOICES, TierChoice
from mosaic_gym.envs import ENV_IDS as SUITE_ENV_IDS

RECIPES = Path(__file__).parent / "recipes"
Reward = Literal["pairwise", "scalar"]
JudgeName = Literal["rule", "llm"]
RefusalDemos = Literal["kind_blind", "harmful"]


class ConfigError(ValueError):
    """A bad recipe or override; the message names the key (and file) and says what is wrong."""


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        _require(self.r >= 1, "lora.r", f"must be at least 1, got {self.r}")
        _require(self.alpha >= 1, "lora.alpha", f"must be at least 1, got {self.alpha}")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")
        _require(bool(self.target_modules), "lora.target_modules", "must name at least one module")


@dataclass
class EpisodeSettings:
    """Which episodes the agent practises on, and how long it may take over them."""

    envs: list[str] = field(default_factory=lambda: list(SUITE_ENV_IDS))  # also agentdojo-banking, ...
    tier: TierChoice = "all"  # starter: 1-3 tool calls, where a small model's decisions show
    max_steps: int = 6  # replies per episode
    max_new_tokens: int = 160  # per reply

    def __post_init__(self) -> None:
        for name in self.envs:
            _require(name in ENV_IDS, "episodes.envs", f"unknown suite {name!r}; choose from {', '.join(ENV_IDS)}")
            try:
                check_available(name)
            except AgentDojoMissing as error:
                raise ConfigError(f"episodes.envs: {name}: {error}") from None
        _require(bool(self.envs), "episodes.envs", "must name at least one suite")
        _require(
            self.tier in TIER_CHOICES, "episodes.tier", f"must be one of {', '.join(TIER_CHOICES)}, got {self.tier!r}"
        )
        _require(self.max_steps >= 1, "episodes.max_steps", f"must be at least 1, got {self.max_steps}")
        _require(
            self.max_new_tokens >= 16, "episodes.max_new_tokens", f"must be at least 16, got {self.max_new_tokens}"
        )


@dataclass
class SFTSettings:
    """The warm start: imitation of demonstrations that show every action but not when to refuse."""

    steps: int = 60  # optimizer steps; 0 skips the warm start
    instances_per_template: int = 2
    batch_size: int = 4  # demonstrations per optimizer step
    loss_batch_size: int = 1  # demonstrations per forward/backward pass (padded, similar lengths together)
    learning_rate: float = 5e-4
    refusal_rate: float = 0.3  # share of demonstrations that refuse at a random step, whatever the task
    # kind_blind: refusals by refusal_rate, whatever the task (the warm start RL builds on).
    # harmful: refuse exactly the harmful tasks, at the first reply, and no other (refusal_rate
    # unused): the supervised ceiling, the best refusal this model learns from these instructions.
    refusals: RefusalDemos = "kind_blind"
    check_rate: float = 0.5  # share of replies with a <safety_thoughts> block, whatever the task
    max_length: int = 2048

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "sft.steps", f"must be 0 (no warm start) or more, got {self.steps}")
        _require(self.instances_per_template >= 1, "sft.instances_per_template", "must be at least 1")
        _require(self.batch_size >= 1, "sft.batch_size", f"must be at least 1, got {self.batch_size}")
        _require(
            self.loss_batch_size >= 1 and self.batch_size % self.loss_batch_size == 0,
            "sft.loss_batch_size",
            f"must be at least 1 and divide sft.batch_size ({self.batch_size}), got {self.loss_batch_size}",
        )
        _require(self.learning_rate > 0, "sft.learning_rate", f"must be positive, got {self.learning_rate}")
        _require(
            self.refusals in typing.get_args(RefusalDemos),
            "sft.refusals",
            f"must be one of {', '.join(typing.get_args(RefusalDemos))}, got {self.refusals!r}",
        )
        for name in ("refusal_rate", "check_rate"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"sft.{name}", f"must be in [0, 1], got {value}")
        _require(self.max_length >= 256, "sft.max_length", f"must be at least 256, got {self.max_length}")


@dataclass
class RLSettings:
    """Online GRPO: G sampled trajectories per task instance, scored against each other."""

    steps: int = 20  # 0 stops after the warm start
    group_size: int = 4  # G
    groups_per_step: int = 4  # task instances per optimizer step
    learning_rate: float = 2e-5
    beta: float = 0.02  # KL weight towards the warm start (0 skips the reference pass)
    temperature: float = 1.0
    top_p: float = 1.0
    reward: Reward = "pairwise"
    judge: JudgeName = "rule"
    judge_model: str | None = None  # llm judge: a local model id or path, or the endpoint's model name
    judge_base_url: str | None = None  # llm judge: an OpenAI-compatible endpoint instead of a local model
    format_weight: float = 1.0  # weight of r_format, in [0, 2] per trajectory
    length_budget: int = 400  # L0 of the length penalty max(0, (L - L0) / L0)
    length_weight: float = 1.0
    save_steps: int = 5
    rollout_batch_size: int = 16
    loss_batch_size: int = 1  # trajectories per forward/backward pass (padded); more is faster, and uses more memory
    # Probability that a group's task is harmful; None draws templates uniformly. Refusing is
    # rewarded in harmful groups and penalised in all others: 0.5 gives the two signals equal weight.
    harmful_share: float | None = None
    # Plays per group whose first reply is the protocol's refusal instead of a sample, whatever
    # the task: every group then holds a refusal for the judge to weigh against the sampled
    # attempts, even after the policy stops sampling refusals (which otherwise ends all learning
    # about when to refuse). 0 turns it off.
    explore_refusals: int = 0

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "rl.steps", f"must be 0 (warm start only) or more, got {self.steps}")
        # The group's size first: the settings below are checked against it.
        _require(self.group_size >= 2, "rl.group_size", f"must be at least 2 to compare, got {self.group_size}")
        _require(self.groups_per_step >= 1, "rl.groups_per_step", "must be at least 1")
        _require(
            0 <= self.explore_refusals < self.group_size,
            "rl.explore_refusals",
            f"must be 0 or more and below rl.group_size {self.group_size}, so that a group keeps a sampled "
            f"play, got {self.explore_refusals}",
        )
        _require(self.loss_batch_size >= 1, "rl.loss_batch_size", f"must be at least 1, got {self.loss_batch_size}")
        _require(
            self.harmful_share is None or 0.0 <= self.harmful_share <= 1.0,
            "rl.harmful_share",
            f"must be null (uniform) or in [0, 1], got {self.harmful_share}",
        )
        _require(
            (self.group_size * self.groups_per_step) % self.loss_batch_size == 0,
            "rl.loss_batch_size",
            f"must divide the {self.group_size * self.groups_per_step} trajectories of a step "
            "(rl.group_size x rl.groups_per_step)",
        )
        _require(self.learning_rate > 0, "rl.learning_rate", f"must be positive, got {self.learning_rate}")
        _require(self.beta >= 0, "rl.beta", f"must be 0 or more, got {self.beta}")
        _require(self.temperature > 0, "rl.temperature", "must be positive: greedy decoding makes a group identical")
        _require(0 < self.top_p <= 1, "rl.top_p", f"must be in (0, 1], got {self.top_p}")
        _require(
            self.reward in typing.get_args(Reward), "rl.reward", f"must be pairwise or scalar, got {self.reward!r}"
        )
        _require(self.judge in typing.get_args(JudgeName), "rl.judge", f"must be rule or llm, got {self.judge!r}")
        if self.judge == "llm":
            _require(self.judge_model is not None, "rl.judge_model", "the llm judge needs a model (id, path or name)")
        _require(self.judge_base_url is None or self.judge == "llm", "rl.judge_base_url", "only the llm judge uses it")
        _require(self.format_weight >= 0, "rl.format_weight", "must be 0 or more")
        _require(self.length_budget >= 1, "rl.length_budget", "must be at least 1 token")
        _require(self.length_weight >= 0, "rl.length_weight", "must be 0 or more")
        _require(self.save_steps >= 1, "rl.save_steps", "must be at least 1")
        _require(self.rollout_batch_size >= 1, "rl.rollout_batch_size", "must be at least 1")

    @property
    def trajectories_per_step(self) -> int:
        return self.group_size * self.groups_per_step


@dataclass
class ProbeSettings:
    """After the warm start: sample it at the RL temperature on train and held-out tasks of every
    kind, and report how often it refuses, completes and harms. RL can only prefer a refusal it
    samples, so this table says whether the RL stage has contrasts to learn from."""

    episodes_per_kind: int = 8  # per split; 0 skips the probe
    seed: int = 1000

    def __post_init__(self) -> None:
        _require(self.episodes_per_kind >= 0, "probe.episodes_per_kind", "must be 0 (no probe) or more")


@dataclass
class TrainConfig:
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct; else an HF id or local path
    seed: int = 0
    device: str | None = None  # None: cuda when present, else cpu
    dtype: str | None = None  # None: bf16 where the hardware runs it fast, else float32
    threads: int | None = None  # torch threads on CPU; None keeps torch's choice
    warm_start: str | None = None  # an existing warm-start adapter folder: RL starts from it, no SFT
    lora: LoraSettings = field(default_factory=LoraSettings)
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)
    sft: SFTSettings = field(default_factory=SFTSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)

    def __post_init__(self) -> None:
        _require(
            self.dtype in (None, "float32", "bfloat16", "float16"), "dtype", "must be float32, bfloat16 or float16"
        )
        _require(self.threads is None or self.threads >= 1, "threads", "must be at least 1")
        _require(
            self.sft.steps > 0 or self.rl.steps > 0, "sft.steps", "sft.steps and rl.steps are both 0: nothing to train"
        )
        if self.warm_start is not None:
            _require(self.rl.steps > 0, "warm_start", "given a warm start, rl.steps must be positive")
            adapter = Path(self.warm_start) / "adapter_config.json"
            _require(adapter.is_file(), "warm_start", f"{self.warm_start} holds no adapter (no adapter_config.json)")

    @property
    def trains_warm_start(self) -> bool:
        return self.warm_start is None and self.sft.steps > 0

    @property
    def has_warm_start(self) -> bool:
        """Whether RL starts from a warm-start adapter (trained here or given) or from scratch."""
        return self.warm_start is not None or self.sft.steps > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recipe_path(name_or_path: str) -> Path:
    """A recipe by name (``quick``, ``full``...) from train/recipes, or any YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"--config {name_or_path}: no such file")
        return path
    builtin = RECIPES / f"{name_or_path}.yaml"
    if not builtin.is_file():
        names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise ConfigError(
            f"--config {name_or_path!r}: no such recipe; choose from {', '.join(names)} or give a .yaml path"
        )
    return builtin


def load_config(name_or_path: str | None, overrides: list[str] | None = None) -> TrainConfig:
    """The recipe (or the defaults) with ``--section.key value`` overrides applied, validated."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if name_or_path is not None:
        path = recipe_path(name_or_path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        raw = loaded
    for key, value in _parse_overrides(overrides or []):
        _set_dotted(raw, key, value)
    return from_dict(raw, where)


def from_dict(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    try:
        config = _build(TrainConfig, raw, "")
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return config


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown setting {prefix}{key}{hint}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(typing.cast(type[Any], kind), value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, kind, f"{prefix}{name}")
    return cls(**values)


_FLOAT_WITHOUT_DOT = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check a YAML value against a field's type (ints are accepted where floats are expected)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(kind)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, typing.get_args(kind)))}, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str) and _FLOAT_WITHOUT_DOT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string
    if kind in (int, float, str, bool) and (type(value) is not kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def _describe(kind: Any) -> str:
    return " or ".join("null" if k is type(None) else getattr(k, "__name__", str(k)) for k in typing.get_args(kind))


def _parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["--rl.steps", "10", "--sft.steps=0"]`` -> ``[("rl.steps", 10), ("sft.steps", 0)]`` (values are YAML)."""
    pairs: list[tuple[str, Any]] = []
    rest = list(items)
    while rest:
        item = rest.pop(0)
        if not item.startswith("--") or len(item) == 2:
            raise ConfigError(f"override {item!r}: expected --section.key VALUE, e.g. --rl.steps 10")
        key, sep, text = item[2:].partition("=")
        if not sep:
            if not rest:
                raise ConfigError(f"override --{key}: missing its value")
            text = rest.pop(0)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override --{key}: cannot read value {text!r}") from None
        pairs.append((key.replace("-", "_"), value))
    return pairs


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override --{key}: {section} is not a section")
        node = child
    node[last] = value


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
