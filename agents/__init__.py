"""Agents that act in mosaic-gym environments."""
