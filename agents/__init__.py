"""Agents that act in mosaic-gym environments, and the registry that names them."""

from mosaic_gym.agent import Agent, Reply, TokenTrace, Turn
from mosaic_gym.agents.scripted import NaiveAgent, OracleAgent, RandomAgent, RefuseAgent

__all__ = ["Agent", "NaiveAgent", "OracleAgent", "RandomAgent", "RefuseAgent", "Reply", "TokenTrace", "Turn"]
