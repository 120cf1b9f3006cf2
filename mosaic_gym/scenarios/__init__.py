"""Scenario templates: YAML task families, their checks, and their instantiation."""

from mosaic_gym.scenarios.instantiate import ScenarioError, Task, instantiate
from mosaic_gym.scenarios.loader import ScenarioLoadError, load_file, load_folder
from mosaic_gym.scenarios.template import Template

__all__ = ["ScenarioError", "ScenarioLoadError", "Task", "Template", "instantiate", "load_file", "load_folder"]
