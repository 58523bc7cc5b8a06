"""Pure parts, without a server: the window rule, latency specs, campaign files, config."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from worker.simulator import (
    AccountSpec,
    LatencySpec,
    SimulatorConfig,
    load_campaigns,
    parse_latency,
)
from worker.simulator.windows import SlidingWindow


def test_window_is_half_open() -> None:
    window = SlidingWindow(1.0)
    assert [window.record("k", t) for t in (10.0, 10.5, 10.9)] == [1, 2, 3]
    # At exactly t - W the arrival at 10.0 is out: (10.0, 11.0].
    assert window.record("k", 11.0) == 3
    assert window.record("k", 11.5) == 3  # 10.5 left at 11.5
    assert window.count("k", 11.9) == 2  # 10.9 is out at 11.9; 11.0, 11.5 stay
    assert window.count("other", 11.9) == 0


def test_window_counts_keys_apart() -> None:
    window = SlidingWindow(60.0)
    assert [window.record("a", float(t)) for t in range(3)] == [1, 2, 3]
    assert window.record("b", 2.0) == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0", LatencySpec()),
        ("fixed:0", LatencySpec()),
        ("25", LatencySpec("fixed", 25.0)),
        ("fixed:50", LatencySpec("fixed", 50.0)),
        ("uniform:0,300", LatencySpec("uniform", 0.0, 300.0)),
        (" exp:100 ", LatencySpec("exp", 100.0)),
    ],
)
def test_parse_latency(spec: str, expected: LatencySpec) -> None:
    assert parse_latency(spec) == expected
    assert parse_latency(expected.spec()) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "-5", "fixed:", "fixed:-1", "uniform:300,0", "uniform:5", "exp:x", "gauss:5", "nan"],
)
def test_parse_latency_refuses(spec: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(spec)


def test_latency_samples_stay_in_range() -> None:
    rng = random.Random(1)
    uniform = parse_latency("uniform:100,300")
    samples = [uniform.sample_s(rng) for _ in range(200)]
    assert all(0.1 <= s <= 0.3 for s in samples)
    assert parse_latency("fixed:50").sample_s(rng) == 0.05
    mean = sum(parse_latency("exp:100").sample_s(rng) for _ in range(4000)) / 4000
    assert 0.09 < mean < 0.11


def test_load_json_both_shapes(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"campaigns": {"a": ["1", "2", "2"], "b": []}}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"a": ["1", "2"], "campaigns": ["9"]}))
    assert load_campaigns(wrapped) == {"a": frozenset({"1", "2"}), "b": frozenset()}
    assert load_campaigns(str(plain)) == {"a": frozenset({"1", "2"}), "campaigns": frozenset({"9"})}


def test_load_csv(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text(
        "\ufeffPhoneNumber,CAMPAIGNNAME,note\r\n"
        "8100000001,spring,x\r\n"
        "+918100000002, spring ,\r\n"
        "\r\n"
        "0800,autumn,y\r\n",
        encoding="utf-8",
    )
    assert load_campaigns(path) == {
        "spring": frozenset({"8100000001", "+918100000002"}),
        "autumn": frozenset({"0800"}),
    }


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.json", "", "empty"),
        ("broken.json", '{"a": ["1"', "not valid JSON"),
        ("list.json", '["1", "2"]', "JSON object"),
        ("number.json", '{"a": [8100000001]}', "must be a string"),
        ("scalar.json", '{"a": "8100000001"}', "list of numbers"),
        ("header.csv", "campaign,phone\nspring,1\n", "campaignName and phoneNumber"),
        ("short.csv", "campaignName,phoneNumber\nspring\n", "line 2"),
        ("blank.csv", "campaignName,phoneNumber\nspring,\n", "line 2"),
    ],
)
def test_bad_files_are_one_line_value_errors(
    tmp_path: Path, name: str, content: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=reason) as caught:
        load_campaigns(path)
    message = str(caught.value)
    assert "\n" not in message and name in message


def test_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_campaigns(tmp_path / "nope.csv")


def test_config_defaults() -> None:
    config = SimulatorConfig()
    assert config.accounts == {"demo": AccountSpec("demo-key", "token")}
    assert (config.rate_limit, config.rate_window_s) == (100, 60.0)
    assert (config.token_ttl_s, config.token_budget, config.token_budget_window_s) == (
        3600.0,
        10,
        3600.0,
    )
    assert SimulatorConfig(time_scale=30).real_seconds(config.rate_window_s) == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_scale": 0},
        {"rate_limit": 0},
        {"token_budget": 1.5},
        {"drop_rate": 1.1},
        {"drop_rate": 0.5, "error_5xx_rate": 0.6},
        {"double_encode": "some"},
        {"campaigns": {"a": "8100000001"}},
        {"accounts": {"u": "key"}},
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_account_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="auth_mode"):
        AccountSpec("k", "basic")  # type: ignore[arg-type]
