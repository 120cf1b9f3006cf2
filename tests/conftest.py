"""Shared fixtures: one env per suite, built once per test session (template loading is cached anyway)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import mosaic_gym
from mosaic_gym import ToolEnv
from mosaic_gym.protocol import Action
from tests.fake_openai import FakeOpenAI, loopback_only

ENV_IDS = list(mosaic_gym.ENV_IDS.values())
SUITE_NAMES = list(mosaic_gym.ENV_IDS)


def play(env: ToolEnv, actions: list) -> tuple[list[str], dict]:
    """Step through ``actions``; return the observations and the last info."""
    observations, info = [], {}
    for action in actions:
        observation, _, terminated, truncated, info = env.step(action)
        observations.append(observation)
        if terminated or truncated:
            break
    return observations, info


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules that decode with tiny models: one thread is 10-40x faster than two busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=SUITE_NAMES)
def suite_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def typed_lines(action: Action) -> list[str]:
    """What a person types at the terminal for ``action``: plan, safety check, action."""
    lines = [action.plan, action.safety_thoughts or ""]
    if action.kind == "tool_call":
        lines.append(f"call {action.tool} {json.dumps(action.arguments)}")
    else:
        lines.append(f"{action.kind} {action.message}")
    return lines


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server on loopback, with proxies and real keys out of the environment."""
    loopback_only(monkeypatch)
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
