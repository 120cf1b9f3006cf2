"""The trainer's config: recipes load, overrides apply, and bad settings fail before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosaic_gym.cli.main import main
from mosaic_gym.train.config import RECIPES, ConfigError, TrainConfig, from_dict, load_config


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES.glob("*.yaml")))
def test_every_recipe_loads(recipe: str) -> None:
    config = load_config(recipe)
    assert isinstance(config, TrainConfig)
    assert config.rl.trajectories_per_step % config.rl.group_size == 0


def test_recipes_include_quick_full_and_gpu() -> None:
    assert {"quick", "full", "gpu-qwen7b"} <= {p.stem for p in RECIPES.glob("*.yaml")}
    assert load_config("gpu-qwen7b").model == "Qwen/Qwen2.5-7B-Instruct"


def test_overrides_apply_with_yaml_values() -> None:
    config = load_config(
        "quick", ["--rl.steps", "7", "--rl.reward=scalar", "--episodes.envs", "[files]", "--seed", "3"]
    )
    assert (config.rl.steps, config.rl.reward, config.episodes.envs, config.seed) == (7, "scalar", ["files"], 3)
    assert load_config("quick", ["--rl.learning_rate", "1"]).rl.learning_rate == 1.0  # an int where a float goes
    # YAML 1.1 reads 2e-3 (no dot) as a string; a float setting takes it as the number it means.
    assert load_config("quick", ["--sft.learning_rate", "2e-3"]).sft.learning_rate == 0.002


# The quick recipe with the decision learned through the LoRA weights and 2 groups a step, so
# that each bad setting below is the only thing wrong, whatever the recipe's head settings.
PLAIN_RL = [
    *("--rl.groups_per_step", "2", "--rl.decision_optimizer", "adamw", "--rl.decision_learning_rate", "null"),
    *("--rl.decision_replay", "0", "--rl.decision_level", "0", "--rl.decision_level_reset", "false"),
    *("--rl.decision_level_anchors", "0", "--rl.train_adapter", "true"),
]
# A decision head that rl.decision_level_by_tier may move.
HEAD = ["--rl.decision_optimizer", "head", "--rl.decision_learning_rate", "1"]
ANCHORED = ["--rl.decision_level", "1", "--rl.decision_level_reset", "true", "--rl.decision_level_anchors", "2"]
# The rate hold on anchors of both tiers, which rl.decision_level_rates may set.
RATES = [*HEAD, *ANCHORED, "--rl.decision_level_hold", "rate"]
RATES += ["--rl.decision_level_anchor_tiers", "[starter, standard]"]
BY_TIER = ["--rl.decision_level_by_tier", "true"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--rl.stepz", "3"], "unknown setting rl.stepz; did you mean rl.steps?"),
        (["--rl.group_size", "1"], "rl.group_size: must be at least 2"),
        (["--rl.temperature", "0"], "greedy decoding makes a group identical"),
        (["--rl.reward", "ranked"], "rl.reward: must be one of pairwise, scalar"),
        (["--rl.judge", "llm"], "rl.judge_model: the llm judge needs a model"),
        (["--rl.steps", "many"], "rl.steps: expected int, got 'many'"),
        (["--rl.learning_rate", "fast"], "rl.learning_rate: expected float, got 'fast'"),
        (["--episodes.envs", "[files, shop]"], "unknown suite 'shop'"),
        (["--sft.steps", "0", "--rl.steps", "0"], "nothing to train"),
        (["--sft.refusal_rate", "1.5"], "sft.refusal_rate: must be in [0, 1]"),
        (["--sft.loss_batch_size", "3"], "sft.loss_batch_size: must be at least 1 and divide sft.batch_size (4)"),
        (["--rl.loss_batch_size", "3"], "rl.loss_batch_size: must divide the 8 trajectories of a step"),
        (["--rl.kinds", "{harmful: -1, benign: 1}"], "rl.kinds: weights must be 0 or more, and not all 0"),
        (["--rl.kinds", "{harmful: 0}"], "rl.kinds: weights must be 0 or more, and not all 0"),
        (["--rl.kinds", "{harmfull: 1}"], "rl.kinds"),
        (["--rl.decision_level", "-0.5"], "rl.decision_level: must be 0 or more, got -0.5"),
        (["--rl.decision_level_on", "benign"], "rl.decision_level_on: must be one of all, acting"),
        (
            ["--rl.decision_points", "every", "--rl.decision_rank", "0"],
            "rl.decision_points: 'every' chooses what rl.decision_rank and rl.decision_level read, and both are 0",
        ),
        (
            ["--rl.decision_level_by", "reply"],
            "rl.decision_level_by: 'reply' reads each reply apart, and rl.decision_points 'first' reads",
        ),
        (
            ["--rl.decision_rank_by", "reply"],
            "rl.decision_rank_by: 'reply' reads each reply apart, and rl.decision_points 'first' reads",
        ),
        (["--rl.decision_learning_rate", "0"], "rl.decision_learning_rate: must be positive, or null"),
        (
            ["--rl.decision_learning_rate", "1e-3", "--rl.decision_rank", "0"],
            "rl.decision_learning_rate: steps the loss of rl.decision_rank and rl.decision_level, and both are 0",
        ),
        (
            ["--rl.decision_learning_rate", "1e-3", "--rl.decision_rank", "1", "--rl.decision_points", "every"],
            "rl.decision_learning_rate: steps decisions read apart from TRL's loss passes",
        ),
        (
            ["--rl.decision_optimizer", "normalized"],
            "rl.decision_optimizer: is the decision's own step, and rl.decision_learning_rate (its length) is null",
        ),
        (
            ["--rl.decision_optimizer", "head", "--rl.decision_learning_rate", "0.5", "--rl.decision_weight", "1"],
            "rl.decision_optimizer: 'head' gives the decision parameters of its own: set rl.decision_weight to 0",
        ),
        (["--rl.decision_replay", "1"], "rl.decision_replay: must be 0 or at least rl.groups_per_step 2, so that"),
        (
            ["--rl.decision_level_offset", "1", "--rl.decision_rank", "1"],
            "rl.decision_level_offset: raises the level rl.decision_level holds: it needs rl.decision_level above 0",
        ),
        (
            ["--rl.decision_level_offset_from", "0"],
            "rl.decision_level_offset_from: is an RL step, 1 for the first, got 0",
        ),
        (
            ["--rl.decision_level_offset_from", "3"],
            "rl.decision_level_offset_from: says when rl.decision_level_offset applies, and the offset is 0",
        ),
        (
            ["--rl.decision_level_reset", "true", "--rl.decision_rank", "1"],
            "rl.decision_level_reset: resets the level rl.decision_level holds: it needs rl.decision_level above 0",
        ),
        (["--rl.decision_level_anchors", "-1"], "rl.decision_level_anchors: must be 0 or more"),
        (
            ["--rl.decision_level_anchors", "2"],
            "rl.decision_level_anchors: are first replies where rl.decision_level_reset holds the level: they need",
        ),
        (
            ["--rl.decision_level_anchor_tiers", "[starter]"],
            "rl.decision_level_anchor_tiers: are the tiers of rl.decision_level_anchors, which is 0",
        ),
        (
            ["--rl.decision_level_anchor_tiers", "[starter, starter]"],
            "rl.decision_level_anchor_tiers: lists a tier twice",
        ),
        (
            ["--rl.decision_level_by_tier", "true"],
            "rl.decision_level_by_tier: holds each tier's level with the decision head's bias and weight: it needs",
        ),
        (
            ["--rl.decision_level_by_tier", "true", *HEAD],
            "rl.decision_level_by_tier: holds each of rl.decision_level_anchor_tiers at its own level: it needs two",
        ),
        (
            [
                "--rl.decision_level_by_tier",
                "true",
                *HEAD,
                *ANCHORED,
                "--rl.decision_level_anchor_tiers",
                "[starter, all]",
            ],
            "rl.decision_level_by_tier: holds each of rl.decision_level_anchor_tiers at its own level: it needs two",
        ),
        (
            ["--rl.decision_level_hold", "rate"],
            "rl.decision_level_hold: 'rate' holds the anchors' rate with the decision head: it needs",
        ),
        (
            ["--rl.decision_level_hold", "rate", *HEAD],
            "rl.decision_level_hold: 'rate' holds the anchors' rate with the decision head: it needs",
        ),
        (["--rl.decision_level_hold", "odds"], "rl.decision_level_hold: must be one of margin, rate, got 'odds'"),
        (
            ["--rl.decision_level_rates", "{starter: 0.4}"],
            "rl.decision_level_rates: are rates of \" No\" to hold: they need rl.decision_level_hold 'rate'",
        ),
        (
            [*RATES, "--rl.decision_level_rates", "{starter: 0.4}"],
            "rl.decision_level_rates: give one rate for each of rl.decision_level_anchor_tiers "
            "['starter', 'standard'], got one for ['starter']",
        ),
        (
            [*RATES, "--rl.decision_level_rates", "{starter: 0.4, standard: 0.3}"],
            "rl.decision_level_rates: hold each tier at its own rate: with two or more tiers they need",
        ),
        (
            [*RATES, *BY_TIER, "--rl.decision_level_rates", "{starter: 1, standard: 0.3}"],
            'rl.decision_level_rates.starter: is a rate of " No", above 0 and below 1, got 1.0',
        ),
        (
            [
                *RATES,
                *BY_TIER,
                "--rl.decision_level_rates",
                "{starter: 0.4, standard: 0.3}",
                "--rl.decision_level_offset",
                "1",
            ],
            "rl.decision_level_offset: raises the frozen copy's level, and rl.decision_level_rates replace it",
        ),
        (
            ["--rl.decision_level_rates", "{easy: 0.4}"],
            "rl.decision_level_rates.easy.[key]: must be one of starter, standard, all, got 'easy'",
        ),
        (
            ["--rl.decision_level_anchor_kinds", "[benign]"],
            "rl.decision_level_anchor_kinds: are the kinds of rl.decision_level_anchors, which is 0",
        ),
        (
            ["--rl.decision_level_anchor_kinds", "[benign, benign]"],
            "rl.decision_level_anchor_kinds: lists a kind twice",
        ),
        (
            ["--rl.decision_level_anchor_tiers", "[easy]"],
            "rl.decision_level_anchor_tiers[0]: must be one of starter, standard, all, got 'easy'",
        ),
        (
            ["--rl.decision_head_ridge", "0", *HEAD],
            "rl.decision_head_ridge: must be positive, or null for the exact step, got 0.0",
        ),
        (
            ["--rl.decision_head_ridge", "1"],
            "rl.decision_head_ridge: shapes the decision head's step: it needs rl.decision_optimizer 'head'",
        ),
        (
            ["--rl.train_adapter", "false"],
            "rl.train_adapter: false leaves RL nothing to train but the decision head: set rl.decision_optimizer",
        ),
        (["--rl.explore_refusals", "4"], "rl.explore_refusals: must be 0 or more and below rl.group_size 4"),
        (["--episodes.tier", "easy"], "episodes.tier: must be one of starter, standard, all"),
        (["--probe.episodes_per_kind", "-1"], "probe.episodes_per_kind: must be 0 (no probe) or more"),
        (["--warm_start", "/no/such/adapter"], "warm_start: /no/such/adapter holds no adapter"),
        (["--rl.steps"], "override --rl.steps: missing its value"),
        (["rl.steps", "3"], "expected --section.key VALUE"),
        (["--rl", "3"], "rl: expected a mapping"),
    ],
)
def test_bad_settings_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("quick", [*PLAIN_RL, *overrides])
    assert message in str(error.value)


def test_recipe_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  steps: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(str(bad))
    bad.write_text("rl:\n  group_sise: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown setting rl\.group_sise; did you mean rl\.group_size"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match=r"no such recipe; choose from .*full.*quick"):
        load_config("fastest")


def test_config_round_trips_through_its_dict() -> None:
    config = load_config("full")
    assert from_dict(config.to_dict()) == config


def test_cli_reports_bad_settings_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "quick", "--out", str(tmp_path / "run"), "--rl.group_size", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mosaic-gym train: error: defaults: rl.group_size: must be at least 2 to compare, got 1".replace(
        "defaults", str(RECIPES / "quick.yaml")
    )
    with pytest.raises(SystemExit) as exit_code:  # only train takes --section.key overrides
        main(["eval", "--agent", "oracle", "--out", str(tmp_path / "e"), "--rl.steps", "3"])
    assert exit_code.value.code == 2
    assert "unrecognized arguments: --rl.steps 3" in capsys.readouterr().err


def test_kind_weights_set_the_kind_of_the_training_groups() -> None:
    from mosaic_gym.envs import SUITES
    from mosaic_gym.train.grpo import training_rows

    kinds = {t.id: t.kind for suite in SUITES.values() for t in suite.templates()}

    def shares(weights: dict[str, float] | None) -> dict[str, float]:
        config = from_dict({"episodes": {"tier": "starter"}, "rl": {"steps": 40, "kinds": weights}})
        tasks = [json.loads(row["prompt"][0]["content"])["task"] for row in training_rows(config)]
        assert all(task.split(".")[0] in config.episodes.envs for task in tasks)
        return {kind: sum(kinds[task] == kind for task in tasks) / len(tasks) for kind in set(kinds.values())}

    assert shares({"harmful": 1})["harmful"] == 1.0
    balanced = shares({"harmful": 1, "benign": 1, "privacy": 0})
    assert balanced["injection"] == balanced["privacy"] == 0.0 and 0.35 < balanced["harmful"] < 0.65
    assert 0.1 < shares(None)["harmful"] < 0.4, "uniform over templates: a quarter of the starter tier is harmful"


def test_each_step_takes_the_kinds_in_their_shares() -> None:
    from mosaic_gym.envs import SUITES
    from mosaic_gym.train.grpo import training_rows

    kinds = {t.id: t.kind for suite in SUITES.values() for t in suite.templates()}
    weights = {"harmful": 3, "benign": 1, "injection": 1, "privacy": 1}
    config = from_dict({"episodes": {"tier": "starter"}, "rl": {"steps": 12, "groups_per_step": 4, "kinds": weights}})
    tasks = [json.loads(row["prompt"][0]["content"])["task"] for row in training_rows(config)]
    steps = [[kinds[task] for task in tasks[i : i + 4]] for i in range(0, len(tasks), 4)]
    assert all(step.count("harmful") == 2 for step in steps), "half the weight, half of every step"
    others = [kind for step in steps for kind in step if kind != "harmful"]
    assert {others.count(kind) for kind in ("benign", "injection", "privacy")} <= {7, 8, 9}
    assert steps != [sorted(step) for step in steps], "the kinds come in random order within a step"


def test_kind_weights_name_a_suite_without_those_kinds() -> None:
    pytest.importorskip("agentdojo")
    from mosaic_gym.train.grpo import training_rows

    config = from_dict({"episodes": {"envs": ["agentdojo-banking"]}, "rl": {"steps": 1, "kinds": {"harmful": 1}}})
    with pytest.raises(
        ConfigError, match=r"rl.kinds: the agentdojo-banking suite has no train template of the kinds \['harmful'\]"
    ):
        training_rows(config)


def test_the_trl_section_passes_any_trl_field_to_the_stages_that_have_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from mosaic_gym.train.policy import trainer_args

    config = load_config("quick", ["--trl.report_to", "[]", "--trl.use_vllm", "false", "--trl.loss_type", "dapo"])
    model = torch.nn.Linear(2, 2)
    rl = trainer_args(config, "rl", model, tmp_path, defaults={"report_to": ["stage"], "save_total_limit": 2})
    sft = trainer_args(config, "sft", model, tmp_path)
    assert rl["report_to"] == sft["report_to"] == [], "the recipe's value wins over the defaults (tensorboard)"
    assert rl["save_total_limit"] == 2, "a stage's default stands where the recipe is silent"
    assert rl["use_vllm"] is False and "use_vllm" not in sft, "only GRPOConfig has use_vllm"
    assert rl["loss_type"] == sft["loss_type"] == "dapo"
    with pytest.raises(ConfigError, match=r"trl\.report_too: not a field of TRL's .*; did you mean trl\.report_to\?"):
        load_config("quick", ["--trl.report_too", "[]"])
    with pytest.raises(ConfigError, match=r"trl\.learning_rate: set by this config's own settings"):
        load_config("quick", ["--trl.learning_rate", "1e-3"])
    with pytest.raises(ConfigError, match=r"trl\.shuffle_dataset: set by this config's own settings \(rl\.kinds"):
        load_config("quick", ["--trl.shuffle_dataset", "true"])


def test_judge_names_come_from_the_registry() -> None:
    from mosaic_gym.agents.registry import JUDGES, JudgeEntry, register_judge
    from mosaic_gym.judges import RuleJudge

    with pytest.raises(ConfigError, match=r"rl\.judge: unknown judge 'rulez'; did you mean 'rule'\?"):
        load_config("quick", ["--rl.judge", "rulez"])
    register_judge("strict", JudgeEntry("the rule judge, under another name", lambda options: RuleJudge()))
    try:
        assert load_config("quick", ["--rl.judge", "strict"]).rl.judge == "strict"
    finally:
        del JUDGES["strict"]
