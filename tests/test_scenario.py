"""Tests of scenarios: the embedded default, validation and expectations."""

from __future__ import annotations

import math

import pytest

from stressor.hooks import HookPoint
from stressor.scenario import (
    DEFAULT_METRICS_PORT,
    ConfigError,
    Expectation,
    Scenario,
    build_expectations,
    new_seed,
    parse_outcome_option,
    parse_points,
)

TARGETS = ("reference", "polling", "docker-1.12.1", "docker-1.13.0")
WINDOW_POINTS = (HookPoint.AFTER_EXIT, HookPoint.BEFORE_REMOVE)

# --- the embedded default scenario --------------------------------------------------


def test_default_targets() -> None:
    assert Scenario().targets == TARGETS


def test_default_is_bounded_by_duration() -> None:
    assert Scenario().cycles is None


def test_default_duration_fits_10_to_20_seconds() -> None:
    scenario = Scenario()
    assert scenario.duration is not None
    assert 10.0 <= scenario.duration + scenario.deadline <= 20.0


def test_default_metrics_port() -> None:
    assert Scenario().metrics_port == DEFAULT_METRICS_PORT == 9466


def test_default_always_injects_late_writes() -> None:
    assert Scenario().fault_probability == 1.0


@pytest.mark.parametrize("point", WINDOW_POINTS, ids=lambda point: point.value)
def test_default_points_reach_window(point: HookPoint) -> None:
    assert point in Scenario().points


def test_default_docker_1121_must_hang() -> None:
    assert "hang" in Scenario().expectation_for("docker-1.12.1").expect


def test_default_docker_1130_may_lose() -> None:
    assert "lost" in Scenario().expectation_for("docker-1.13.0").allow


def test_default_docker_1130_must_not_hang() -> None:
    expectation = Scenario().expectation_for("docker-1.13.0")
    assert "hang" not in expectation.expect | expectation.allow


@pytest.mark.parametrize("target", ["reference", "polling"])
def test_default_correct_followers_strict(target: str) -> None:
    assert Scenario().expectation_for(target) == Expectation()


def test_expectation_for_unknown_is_strict() -> None:
    assert Scenario(expectations={}).expectation_for("docker-1.12.1") == Expectation()


# --- validation ---------------------------------------------------------------------

INVALID = [
    ("no-targets", {"targets": ()}, "--target"),
    ("unknown-target", {"targets": ("nope",)}, "--target"),
    ("repeated-target", {"targets": ("reference", "reference")}, "--target"),
    ("cycles-0", {"cycles": 0, "duration": None}, "--cycles"),
    ("cycles-negative", {"cycles": -3, "duration": None}, "--cycles"),
    ("cycles-float", {"cycles": 2.5, "duration": None}, "--cycles"),
    ("cycles-and-duration", {"cycles": 3, "duration": 1.0}, "--cycles/--duration"),
    ("neither-length", {"cycles": None, "duration": None}, "--cycles/--duration"),
    ("duration-0", {"duration": 0.0}, "--duration"),
    ("duration-negative", {"duration": -1.0}, "--duration"),
    ("duration-nan", {"duration": math.nan}, "--duration"),
    ("duration-inf", {"duration": math.inf}, "--duration"),
    ("concurrency-0", {"concurrency": 0}, "--concurrency"),
    ("concurrency-huge", {"concurrency": 100_000}, "--concurrency"),
    ("concurrency-bool", {"concurrency": True}, "--concurrency"),
    ("seed-negative", {"seed": -1}, "--seed"),
    ("seed-too-big", {"seed": 2**64}, "--seed"),
    ("lines-negative", {"lines": -1}, "--lines"),
    ("metrics-port-70000", {"metrics_port": 70000}, "--metrics-port"),
    ("metrics-port-negative", {"metrics_port": -1}, "--metrics-port"),
    ("max-gap-negative", {"max_gap": -0.1}, "--max-gap"),
    ("settle-negative", {"settle": -1.0}, "--settle"),
    ("deadline-0", {"deadline": 0.0}, "--deadline"),
    ("deadline-text", {"deadline": "1"}, "--deadline"),
    ("max-wait-0", {"max_wait": 0.0}, "--max-wait"),
    ("max-wait-below-deadline", {"deadline": 2.0, "max_wait": 0.5}, "--max-wait"),
    ("fault-probability-above-1", {"fault_probability": 1.5}, "--fault-probability"),
    ("fault-probability-negative", {"fault_probability": -0.1}, "--fault-probability"),
    (
        "expectation-unknown-outcome",
        {"expectations": {"reference": Expectation(expect=frozenset({"bogus"}))}},
        "--expect/--allow",
    ),
]


@pytest.mark.parametrize(
    ("changes", "option"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_scenario_invalid_raises(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Scenario(**changes)  # type: ignore[arg-type]
    assert caught.value.option == option


@pytest.mark.parametrize(
    ("changes", "option"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_scenario_invalid_message_names_option(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Scenario(**changes)  # type: ignore[arg-type]
    assert option in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "option"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_scenario_invalid_message_is_one_line(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Scenario(**changes)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


VALID = [
    ("cycles-1", {"cycles": 1, "duration": None}),
    ("concurrency-1", {"concurrency": 1}),
    ("concurrency-max", {"concurrency": 4096}),
    ("seed-0", {"seed": 0}),
    ("seed-max", {"seed": 2**64 - 1}),
    ("lines-0", {"lines": 0}),
    ("metrics-port-0", {"metrics_port": 0}),
    ("metrics-port-65535", {"metrics_port": 65535}),
    ("max-gap-0", {"max_gap": 0.0}),
    ("settle-0", {"settle": 0.0}),
    ("max-wait-equals-deadline", {"deadline": 0.3, "max_wait": 0.3}),
    ("fault-probability-0", {"fault_probability": 0.0}),
    ("one-target", {"targets": ("polling",)}),
]


@pytest.mark.parametrize("changes", [case[1] for case in VALID], ids=[case[0] for case in VALID])
def test_scenario_boundary_accepted(changes: dict[str, object]) -> None:
    scenario = Scenario(**changes)  # type: ignore[arg-type]
    assert all(getattr(scenario, name) == value for name, value in changes.items())


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_config_error_keeps_value() -> None:
    with pytest.raises(ConfigError) as caught:
        Scenario(concurrency=0)
    assert caught.value.value == 0


def test_config_error_message_shows_value() -> None:
    with pytest.raises(ConfigError) as caught:
        Scenario(targets=("nope",))
    assert "'nope'" in str(caught.value)


def test_new_seed_in_range() -> None:
    assert all(0 <= new_seed() < 2**64 for _ in range(100))


def test_new_seed_varies() -> None:
    assert len({new_seed() for _ in range(20)}) > 1


# --- --point ------------------------------------------------------------------------


def test_parse_points_in_order() -> None:
    assert parse_points(["before-remove", "after-exit"]) == (
        HookPoint.BEFORE_REMOVE,
        HookPoint.AFTER_EXIT,
    )


def test_parse_points_drops_repeats() -> None:
    assert parse_points(["after-remove", "after-remove"]) == (HookPoint.AFTER_REMOVE,)


def test_parse_points_unknown_option() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_points(["after-exit", "nowhere"])
    assert caught.value.option == "--point"


def test_parse_points_unknown_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_points(["after-exit", "nowhere"])
    assert caught.value.value == "nowhere"


def test_parse_points_unknown_lists_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_points(["nowhere"])
    assert all(point.value in str(caught.value) for point in HookPoint)


# --- --expect and --allow -----------------------------------------------------------


@pytest.mark.parametrize("option", ["--expect", "--allow"])
def test_parse_outcome_option_valid(option: str) -> None:
    assert parse_outcome_option(option, "docker-1.12.1=hang") == ("docker-1.12.1", "hang")


INVALID_OUTCOME_OPTIONS = [
    ("no-equals", "foo"),
    ("no-outcome", "reference="),
    ("no-target", "=hang"),
    ("unknown-target", "nope=hang"),
    ("unknown-outcome", "reference=bogus"),
    ("ok-is-not-a-finding", "reference=ok"),
]


@pytest.mark.parametrize("option", ["--expect", "--allow"])
@pytest.mark.parametrize(
    "text",
    [case[1] for case in INVALID_OUTCOME_OPTIONS],
    ids=[c[0] for c in INVALID_OUTCOME_OPTIONS],
)
def test_outcome_option_invalid_names_option(option: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_outcome_option(option, text)
    assert caught.value.option == option


@pytest.mark.parametrize("option", ["--expect", "--allow"])
@pytest.mark.parametrize(
    "text",
    [case[1] for case in INVALID_OUTCOME_OPTIONS],
    ids=[c[0] for c in INVALID_OUTCOME_OPTIONS],
)
def test_outcome_option_invalid_keeps_value(option: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_outcome_option(option, text)
    assert caught.value.value == text


def command_line(
    expect: list[tuple[str, str]], allow: list[tuple[str, str]]
) -> list[tuple[list[tuple[str, str]], list[tuple[str, str]], str]]:
    """Return the expectation layers of ``--expect`` and ``--allow`` pairs alone."""
    return [(expect, allow, "--expect/--allow")]


def test_build_expectations_keeps_builtin() -> None:
    expectations = build_expectations(TARGETS, command_line([], []))
    assert expectations["docker-1.12.1"] == Expectation(
        expect=frozenset({"hang"}), allow=frozenset({"lost"})
    )


def test_build_expectations_drops_targets_not_in_run() -> None:
    assert build_expectations(("reference",), command_line([], [])) == {}


def test_build_expectations_replaces_builtin() -> None:
    layers = command_line([("docker-1.12.1", "lost")], [])
    expectations = build_expectations(("docker-1.12.1",), layers)
    assert expectations["docker-1.12.1"] == Expectation(expect=frozenset({"lost"}))


def test_build_expectations_collects_expect_and_allow() -> None:
    layers = command_line(
        [("docker-1.13.0", "hang")], [("docker-1.13.0", "hang"), ("docker-1.13.0", "lost")]
    )
    expectations = build_expectations(("docker-1.13.0",), layers)
    assert expectations["docker-1.13.0"] == Expectation(
        expect=frozenset({"hang"}), allow=frozenset({"hang", "lost"})
    )


def test_build_expectations_leaves_other_targets() -> None:
    expectations = build_expectations(TARGETS, command_line([("reference", "lost")], []))
    assert expectations["docker-1.13.0"] == Expectation(allow=frozenset({"lost"}))


@pytest.mark.parametrize(
    ("expect", "allow"),
    [([("docker-1.12.1", "hang")], []), ([], [("docker-1.12.1", "hang")])],
    ids=["expect", "allow"],
)
def test_build_expectations_absent_target_raises(
    expect: list[tuple[str, str]], allow: list[tuple[str, str]]
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_expectations(("reference",), command_line(expect, allow))
    assert "docker-1.12.1" in str(caught.value)


def test_scenario_accepts_built_expectations() -> None:
    targets = ("docker-1.13.0",)
    expectations = build_expectations(targets, command_line([("docker-1.13.0", "hang")], []))
    scenario = Scenario(targets=targets, expectations=expectations)
    assert scenario.expectation_for("docker-1.13.0").expect == frozenset({"hang"})
