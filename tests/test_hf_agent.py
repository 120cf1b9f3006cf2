"""HFAgent and BatchGenerator on a tiny random Llama: no download, no embedded SmolLM2.

The module builds, once, the tiny model of ``tests/tiny_model.py`` (a byte-level BPE tokenizer
with a ChatML template, a two-layer Llama of hidden size 32) as a local model folder. Its
replies are gibberish (format errors to the env), which is all these tests need: they check
the generation arithmetic (shared-prefix cache, padding, rows dropping out), the exact token
traces, determinism, and the one-line errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mosaic_gym import ToolEnv  # noqa: E402
from mosaic_gym.agent import AgentConfigError, TokenTrace  # noqa: E402
from mosaic_gym.agents import generation, prefix_cache  # noqa: E402
from mosaic_gym.agents.decision import decline_commitment  # noqa: E402
from mosaic_gym.agents.generation import BatchGenerator, Continuation, Generation, Sampling  # noqa: E402
from mosaic_gym.agents.hf import ForcedOpening, HFAgent, load_model  # noqa: E402
from mosaic_gym.agents.registry import AgentOptions, make_agent  # noqa: E402
from mosaic_gym.evaluation.run import TRAJECTORIES, EvalConfig, load_records, run_eval  # noqa: E402
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout  # noqa: E402
from tests.chat_template import END  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_llama  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model folder: the tiny random Llama and its tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def mute(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with an all-zero output layer: every reply is EOS at once (empty text)."""
    folder = tmp_path_factory.mktemp("mute-llama")
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(tiny: Path) -> tuple[Any, Any]:
    return load_model(str(tiny), None, "cpu", "float32")


def _chat_prompts(tokenizer: Any, users: list[str]) -> list[list[int]]:
    """One ChatML prompt per user message, all after the same long system prompt of the env."""
    _, info = ToolEnv("files", split="all").reset(seed=0)
    system = info["messages"][0]
    return [
        tokenizer.apply_chat_template(
            [system, {"role": "user", "content": user}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for user in users
    ]


# -- BatchGenerator --------------------------------------------------------------------------


def test_batched_greedy_equals_one_at_a_time_and_hf_generate(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    prompts = _chat_prompts(tokenizer, ["hi", "please list my files", "x" * 40, "ok"])
    shared = min(prefix_cache.shared_lengths(prompts))
    assert shared > 500 and len({len(p) - shared for p in prompts}) > 1, "long shared prefix, ragged suffixes"
    sampling = Sampling(max_new_tokens=16)
    generator = BatchGenerator(model, tokenizer, sampling)
    batched = generator.generate(prompts, [0] * len(prompts))
    # The shared start was run once and kept, and so was each row's prompt and reply.
    kept = [generator.prefixes.longest(p + g.token_ids)[0] for p, g in zip(prompts, batched, strict=True)]
    assert kept == [len(p) + len(g.token_ids) - 1 for p, g in zip(prompts, batched, strict=True)]
    assert generator.prefixes.longest(prompts[0][: shared + 1])[0] == shared
    fresh = BatchGenerator(model, tokenizer, sampling)
    singles = [fresh.generate([p], [0])[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in singles]
    assert batched == generator.generate(prompts, [0] * len(prompts)), "the kept caches give the same result"
    # A row that shares no start (it differs at its first token) beside two that do, and identical prompts.
    unrelated = [prompts[1][5:], prompts[0], prompts[2][:300]]
    assert prefix_cache.shared_lengths(unrelated) == [0, 299, 299]
    assert [g.token_ids for g in BatchGenerator(model, tokenizer, sampling).generate(unrelated, [0, 0, 0])] == [
        BatchGenerator(model, tokenizer, sampling).generate([p], [0])[0].token_ids for p in unrelated
    ]
    twins = generator.generate([prompts[3], prompts[3]], [0, 1])
    assert twins[0] == twins[1] == singles[3]
    # The next turn (prompt, reply, observation) runs only the tokens it adds, and decodes as a fresh generator does.
    observation = tokenizer.encode("\n<|im_start|>user\nfile list: a.txt b.txt<|im_end|>\n<|im_start|>assistant\n")
    turns = [p + g.token_ids + observation for p, g in zip(prompts, batched, strict=True)]
    widths: list[int] = []
    forward = generator._forward
    generator._forward = lambda ids, *rest: (widths.append(ids.shape[1]), forward(ids, *rest))[1]  # type: ignore[method-assign]
    assert generator.generate(turns, [0] * 4) == BatchGenerator(model, tokenizer, sampling).generate(turns, [0] * 4)
    assert widths[0] == len(observation) + 1, "only the reply's last token and the observation were run"
    for g in batched:
        assert g.text == tokenizer.decode(g.token_ids, skip_special_tokens=True)
        assert (g.stop == "length") == (len(g.token_ids) == sampling.max_new_tokens)
    # transformers' own greedy decoding agrees.
    with torch.inference_mode():
        reference = model.generate(
            torch.tensor([prompts[1]]),
            attention_mask=torch.ones((1, len(prompts[1])), dtype=torch.long),
            max_new_tokens=sampling.max_new_tokens,
            do_sample=False,
        )[0, len(prompts[1]) :].tolist()
    ours = singles[1].token_ids
    length = min(len(ours), len(reference))
    assert length > 0 and ours[:length] == reference[:length]


def test_kept_caches_are_dropped_when_the_weights_change(tiny: Path) -> None:
    """A training step writes the weights in place: caches computed before it must not be read after."""
    model, tokenizer = load_model(str(tiny), None, "cpu", "float32")
    prompts = _chat_prompts(tokenizer, ["hi", "please list my files"])
    generator = BatchGenerator(model, tokenizer, Sampling(max_new_tokens=8))
    generator.generate(prompts, [0, 0])
    assert len(generator.prefixes) == 3, "the shared start and both rows"
    with torch.no_grad():
        model.model.layers[0].self_attn.k_proj.weight.mul_(3.0)
    after = generator.generate(prompts, [0, 0])
    assert after == BatchGenerator(model, tokenizer, Sampling(max_new_tokens=8)).generate(prompts, [0, 0])
    assert len(generator.prefixes) == 3, "the old entries went; the new ones are kept"


def test_prefix_cache_keeps_the_most_recently_used_entries_within_its_budget() -> None:
    def layers(tokens: int) -> list[prefix_cache.LayerKV]:
        return [(torch.zeros(1, 2, tokens, 4), torch.zeros(1, 2, tokens, 4))]  # 64 bytes a token

    cache = prefix_cache.PrefixCache(budget_bytes=64 * 10)
    cache.add([1, 2, 3], layers(3))
    cache.add([1, 2, 3, 4, 5], layers(5))
    assert cache.longest([1, 2, 3, 4, 5, 6])[0] == 5
    assert cache.longest([1, 2, 3, 4, 5])[0] == 3, "a prompt needs a token of its own past the entry"
    assert cache.longest([1, 2, 9])[0] == 0
    cache.add([7, 7, 7, 7], layers(4))  # 12 tokens > 10: the least recently used entry goes
    assert cache.longest([1, 2, 3, 4, 5, 6])[0] == 3 and len(cache) == 2
    cache.add(list(range(11)), layers(11))  # larger than the whole budget: not kept
    assert len(cache) == 2 and cache.longest(list(range(12)))[0] == 0
    with pytest.raises(ValueError, match="budget_bytes"):
        prefix_cache.PrefixCache(budget_bytes=-1)


def test_rows_drop_out_at_different_times(loaded: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make one middle row stop early (by EOS, then by a stop string); the others must not notice."""
    model, tokenizer = loaded
    prompts = _chat_prompts(tokenizer, ["a", "bb bb", "ccc ccc ccc", "d"])
    generator = BatchGenerator(model, tokenizer, Sampling(max_new_tokens=12))
    free = generator.generate(prompts, [0] * 4)
    assert all(g.stop == "length" for g in free), "the tiny model runs to the budget unless told to stop"

    # A token that row 1 generates early becomes the EOS: each row must end at its first occurrence.
    stopper = next(t for t in free[1].token_ids[1:5] if t not in free[1].token_ids[:1])
    generator.eos_ids = {stopper}
    stopped = generator.generate(prompts, [0] * 4)
    for before, after in zip(free, stopped, strict=True):
        if stopper in before.token_ids:
            ids = before.token_ids[: before.token_ids.index(stopper) + 1]
            assert after == Generation(ids, tokenizer.decode(ids, skip_special_tokens=True), "eos")
        else:
            assert after == before
    assert stopped[1].stop == "eos" and len(stopped[1].token_ids) < 6
    assert len({len(g.token_ids) for g in stopped}) > 1, "rows finished at different steps"

    # The same by stop string: the text of row 1's first three tokens.
    generator.eos_ids = {tokenizer.eos_token_id}
    stop_string = tokenizer.decode(free[1].token_ids[:3], skip_special_tokens=True).rstrip()
    assert stop_string
    monkeypatch.setattr(generation, "STOP_STRINGS", (stop_string,))
    stopped = generator.generate(prompts, [0] * 4)
    assert stopped[1].stop == "stop_string" and len(stopped[1].token_ids) <= 3
    for before, after in zip(free, stopped, strict=True):
        assert before.token_ids[: len(after.token_ids)] == after.token_ids
        if after.stop == "stop_string":
            assert after.text.rstrip().endswith(stop_string)
        else:
            assert after == before


def test_a_continuation_writes_the_rest_of_a_reply_that_begins_with_its_trigger(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    sampling = Sampling(max_new_tokens=12)
    prompts = _chat_prompts(tokenizer, ["list the files", "read notes.txt"])
    free = BatchGenerator(model, tokenizer, sampling).generate(prompts, [0, 0])
    rest = (*tokenizer("<refuse>no</refuse>", add_special_tokens=False)["input_ids"],)
    continued = BatchGenerator(model, tokenizer, sampling, continuation=Continuation((*free[0].token_ids[:3],), rest))
    first, second = continued.generate(prompts, [0, 0])
    assert first.token_ids == [*free[0].token_ids[:3], *rest] and first.stop == "continued"
    assert first.text == tokenizer.decode(first.token_ids, skip_special_tokens=True)
    assert free[1].token_ids[:3] != free[0].token_ids[:3]
    assert second == free[1], "a reply that begins otherwise samples as before"
    # The kept caches cover what was sampled: the next turn extends the continued reply exactly.
    turn = [prompts[0] + first.token_ids + prompts[1][-4:]]
    assert continued.generate(turn, [0]) == BatchGenerator(model, tokenizer, sampling).generate(turn, [0])
    with pytest.raises(ValueError, match="a trigger and a rest"):
        Continuation((), rest)


def test_top_p_samples_only_the_nucleus(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log().repeat(200, 1)
    for top_p, allowed in ((0.6, {0, 1}), (1.0, {0, 1, 2})):
        generator = BatchGenerator(model, tokenizer, Sampling(temperature=1.0, top_p=top_p))
        chosen = generator._choose(logits, [generator._generator(seed) for seed in range(200)])
        assert set(chosen.tolist()) == allowed


def test_sampling_follows_the_distribution_row_by_row(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    generator = BatchGenerator(model, tokenizer, Sampling(temperature=1.0))
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2])
    chosen = generator._choose(probs.log().repeat(4000, 1), [generator._generator(seed) for seed in range(4000)])
    frequencies = torch.bincount(chosen, minlength=4) / 4000
    assert frequencies[1] == 0 and torch.allclose(frequencies, probs, atol=0.03)
    # A row's token depends on its own seed only, not on the rows beside it.
    alone = generator._choose(probs.log().unsqueeze(0), [generator._generator(7)])
    assert alone.item() == chosen[7].item()


# -- HFAgent through rollout ---------------------------------------------------------------


def _play(agent: HFAgent, episodes: int, batch_size: int = 2) -> list[Trajectory]:
    specs = [EpisodeSpec(seed=seed) for seed in range(episodes)]
    trajectories = list(rollout(agent, lambda: ToolEnv("files", split="all"), specs, batch_size=batch_size))
    assert len(trajectories) == episodes and all(t.outcome is not None for t in trajectories)
    return sorted(trajectories, key=lambda t: t.spec.seed)


def _runs(trace: TokenTrace) -> list[tuple[int, list[int]]]:
    """The trace cut into maximal runs of env tokens (0) and agent tokens (1)."""
    runs: list[tuple[int, list[int]]] = []
    for token, agent in zip(trace.ids, trace.agent_mask, strict=True):
        if runs and runs[-1][0] == agent:
            runs[-1][1].append(token)
        else:
            runs.append((agent, [token]))
    return runs


def _check_trace(trajectory: Trajectory, tokenizer: Any) -> None:
    """The trace is the chat template's rendering of the episode, with the agent's ids as generated."""
    trace, outcome = trajectory.tokens, trajectory.outcome
    assert trace is not None and outcome is not None
    assert len(trace.ids) == len(trace.agent_mask) and set(trace.agent_mask) <= {0, 1}
    assert outcome.agent_tokens == sum(trace.agent_mask) > 0
    runs = _runs(trace)
    steps = trajectory.steps
    assert [agent for agent, _ in runs] == [0, 1] * len(steps), "prompt, reply, observation, reply, ..."
    replies = [ids for agent, ids in runs if agent]
    chunks = [ids for agent, ids in runs if not agent]
    assert [tokenizer.decode(ids, skip_special_tokens=True) for ids in replies] == [s.text for s in steps]
    messages = trajectory.messages
    assert tokenizer.decode(chunks[0]) == tokenizer.apply_chat_template(
        messages[:2], add_generation_prompt=True, tokenize=False
    )
    for step, chunk in zip(steps, chunks[1:], strict=False):
        assert step.observation in tokenizer.decode(chunk)
    # Glue it back together: exactly the template's rendering, up to the closing of the last reply.
    eos = tokenizer.eos_token_id
    text = "".join(
        tokenizer.decode(ids, skip_special_tokens=True) + (END if ids[-1] == eos else "")
        if agent
        else tokenizer.decode(ids)
        for agent, ids in runs
    )
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    closing = "\n" if replies[-1][-1] == eos else END + "\n"
    assert text + closing == tokenizer.apply_chat_template(messages[: last + 1], tokenize=False)


def test_rollout_records_exact_token_traces(tiny: Path) -> None:
    agent = HFAgent(model=str(tiny), sampling=Sampling(max_new_tokens=12))
    trajectories = _play(agent, episodes=4)
    for trajectory in trajectories:
        assert trajectory.steps and all(s.format_error for s in trajectory.steps), "gibberish is a format error"
        _check_trace(trajectory, agent.tokenizer)
        assert trajectory.tokens is not None
        assert max(len(ids) for generated, ids in _runs(trajectory.tokens) if generated) == 12, "the budget"


def test_rollout_traces_of_empty_replies(mute: Path) -> None:
    """A model that answers EOS at once: each reply is one token, its text empty, the template intact."""
    agent = HFAgent(model=str(mute), sampling=Sampling(max_new_tokens=12))
    for trajectory in _play(agent, episodes=2):
        assert trajectory.tokens is not None
        assert all(s.text == "" for s in trajectory.steps)
        assert trajectory.tokens.agent_tokens == len(trajectory.steps)
        _check_trace(trajectory, agent.tokenizer)


def _fingerprint(trajectories: list[Trajectory]) -> list[tuple[list[str], tuple[int, ...]]]:
    return [([s.text for s in t.steps], t.tokens.ids if t.tokens else ()) for t in trajectories]


def test_same_seed_same_trajectories(tiny: Path) -> None:
    def play(**sampling: Any) -> list[tuple[list[str], tuple[int, ...]]]:
        agent = HFAgent(model=str(tiny), sampling=Sampling(max_new_tokens=6, **sampling))
        return _fingerprint(_play(agent, episodes=2))

    greedy = play()
    assert greedy == play()
    sampled = play(temperature=0.8, top_p=0.9, seed=1)
    assert sampled == play(temperature=0.8, top_p=0.9, seed=1)
    assert sampled != play(temperature=0.8, top_p=0.9, seed=2)
    assert sampled != greedy


def test_forced_opening_replaces_the_first_reply_of_the_first_plays(tiny: Path) -> None:
    """rl.explore_refusals: plays 0..n-1 open with the given reply, the rest sample as usual."""
    refusal = "<think>Stop here.</think>\n<refuse>I won't do this.</refuse>"
    model, tokenizer = load_model(str(tiny), None, "cpu", "float32")
    agent = HFAgent.wrap(model, tokenizer, Sampling(max_new_tokens=8, temperature=1.0), ForcedOpening(refusal, 2))
    specs = [EpisodeSpec(seed=3, sample=sample) for sample in range(3)]
    plays = sorted(rollout(agent, lambda: ToolEnv("files", split="all"), specs, 3), key=lambda t: t.spec.sample)
    for forced in plays[:2]:
        assert forced.outcome is not None and forced.outcome.refused and len(forced.steps) == 1
        assert forced.steps[0].text == refusal and forced.steps[0].format_error is None
        assert forced.tokens is not None and forced.tokens.agent_tokens == len(agent.transcripts.tokens(refusal))
        _check_trace(forced, tokenizer)
    sampled = plays[2]
    assert sampled.outcome is not None and not sampled.outcome.refused and sampled.steps[0].format_error
    with pytest.raises(ValueError, match="samples must be 0 or more"):
        ForcedOpening(refusal, -1)


# -- errors --------------------------------------------------------------------------------


def _one_line_error(**kwargs: Any) -> str:
    start = time.monotonic()
    with pytest.raises(AgentConfigError) as caught:
        HFAgent(**kwargs)
    message = str(caught.value)
    assert "\n" not in message and message
    assert time.monotonic() - start < 6, "a bad model gives its error in seconds, not after retries"
    return message


def test_unloadable_models_are_one_line_errors(tiny: Path, tmp_path: Path) -> None:
    assert "cannot load model" in _one_line_error(model=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    assert "no loadable model" in _one_line_error(model=str(tmp_path / "empty"))
    assert "no-such-org/no-such-model" in _one_line_error(model="no-such-org/no-such-model")
    assert "dtype must be one of" in _one_line_error(model=str(tiny), dtype="float8")
    assert "needs the text protocol" in _one_line_error(model=str(tiny), protocol="native", commit_declines=True)


def test_adapter_for_another_model_is_a_one_line_error(tiny: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    other = tiny_llama(vocab=len(transformers.AutoTokenizer.from_pretrained(tiny)), hidden=48)
    lora = peft.get_peft_model(other, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    message = _one_line_error(model=str(tiny), adapter=tmp_path / "adapter")
    assert "does not fit this model" in message


def test_an_adapter_is_merged_into_the_model_it_loads_on(tiny: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    base, _ = load_model(str(tiny), None, "cpu", "float32")
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    merged, _ = load_model(str(tiny), tmp_path / "adapter", "cpu", "float32")
    unmerged = peft.PeftModel.from_pretrained(load_model(str(tiny), None, "cpu", "float32")[0], tmp_path / "adapter")
    assert not isinstance(merged, peft.PeftModel) and not any("lora" in name for name, _ in merged.named_modules())
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        logits = merged(ids).logits
        assert torch.allclose(logits, unmerged(ids).logits, atol=1e-5)
        assert not torch.allclose(logits, load_model(str(tiny), None, "cpu", "float32")[0](ids).logits, atol=1e-3)


# -- through the command-line layer --------------------------------------------------------


def test_registry_and_eval_run_the_hf_agent(tiny: Path, tmp_path: Path) -> None:
    assert isinstance(make_agent("hf", AgentOptions(model=str(tiny))), HFAgent)
    sampled = make_agent("hf", AgentOptions(model=str(tiny), temperature=0.7))
    assert isinstance(sampled, HFAgent) and sampled.generator.sampling.temperature == 0.7
    with pytest.raises(AgentConfigError, match=r"--temperature must be 0 \(greedy\) or more"):
        make_agent("hf", AgentOptions(model=str(tiny), temperature=-1.0))
    committed = make_agent("hf", AgentOptions(model=str(tiny), commit_declines=True))
    assert isinstance(committed, HFAgent)
    assert committed.generator.continuation == decline_commitment(committed.tokenizer)
    assert sampled.generator.continuation is None, "replies are free after their decision unless committed"
    with pytest.raises(AgentConfigError, match="--commit-declines is for --agent hf in the text protocol"):
        make_agent("hf", AgentOptions(model=str(tiny), protocol="native", commit_declines=True))
    config = EvalConfig(agent="hf", model=str(tiny), episodes=2, envs=("mosaic_gym/Files-v0",), batch_size=2)
    metrics = run_eval(config, tmp_path)
    records = load_records(tmp_path / TRAJECTORIES)
    assert len(records) == 2 and metrics["overall"]["episodes"] == 2
    for record in records.values():
        assert record["agent"] == {"name": "hf", "model": str(tiny), "adapter": None}
        assert record["outcome"]["agent_tokens"] > 0


def test_a_libraries_progress_bar_is_muted_and_its_warnings_are_not(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from tqdm.auto import tqdm

    from mosaic_gym.agents.hf import without_bars

    with pytest.warns(UserWarning, match="still said"), without_bars():
        for _ in tqdm(range(3), desc="Converting tensors"):
            pass
        print("still printed")
        warnings.warn("still said", UserWarning, stacklevel=1)
    out, err = capsys.readouterr()
    assert "Converting tensors" not in err and out == "still printed\n"
