"""Bench scenarios: bench/scenarios/NAME.toml read as `rerankpool bench` options, with the flags given winning."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rerankpool.bench.scenarios import KEYS, ScenarioError, available, find, load
from rerankpool.cli import bench_parser, main, parse_args

REPO_SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_load_gives_the_values_the_flags_parse_to(tmp_path: Path) -> None:
    write(tmp_path, "gpu", """
title = "a title"
model = "/tmp/l6"
batch = 32
concurrency = [1, 128]
engine = "torch:float16,onnx"
baseline = true
synthetic_words = [30, 60]
http-processes = 4
broker_args = "--max-batch 256 --bucket-edges 512"
worker_args = ["--threads", "8"]
external = { "infinity-0.0.78" = "http://127.0.0.1:7997" }
""")
    scenario = load("gpu", [tmp_path])
    assert scenario.name == "gpu" and scenario.title == "a title"
    assert scenario.options == {
        "title": "a title", "model": "/tmp/l6", "batch": (32,), "concurrency": (1, 128),
        "engine": ["torch:float16", "onnx"], "baseline": True, "synthetic_words": (30, 60), "http_processes": 4,
        "broker_args": ["--max-batch", "256", "--bucket-edges", "512"], "worker_args": ["--threads", "8"],
        "external": [("infinity-0.0.78", "http://127.0.0.1:7997")],
    }
    assert scenario.defaults()["out"] == str(Path("bench/results/gpu"))


def test_a_scenario_may_name_its_own_out_folder(tmp_path: Path) -> None:
    write(tmp_path, "here", 'out = "/tmp/elsewhere"\n')
    assert load("here", [tmp_path]).defaults()["out"] == "/tmp/elsewhere"


def test_unknown_key_is_named_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, "typo", "concurency = 4\n")
    with pytest.raises(ScenarioError) as err:
        load("typo", [tmp_path])
    assert str(path) in str(err.value) and "'concurency'" in str(err.value)
    assert "did you mean 'concurrency'" in str(err.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pairs = '80000'", "expected an integer"),
        ("baseline = 1", "expected true or false"),
        ("batch = [32, 'x']", "a list of integers"),
        ("dataset = 'squad'", "squad-dev, squad-rerank, synthetic"),
        ("external = { inf = 'localhost:7997' }", "NAME ="),
        ("synthetic_words = [30]", "[LO, HI]"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_its_file(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, "bad", line + "\n")
    with pytest.raises(ScenarioError) as err:
        load("bad", [tmp_path])
    key = line.split(" =")[0]
    assert str(err.value).startswith(f"{path}: {key} = ") and expected in str(err.value)


def test_broken_toml_and_missing_scenarios_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", "batch = [32\n")
    with pytest.raises(ScenarioError, match=str(path)):
        load("broken", [tmp_path])
    with pytest.raises(ScenarioError, match="--list-scenarios"):
        find("nowhere", [tmp_path])
    with pytest.raises(ScenarioError, match="no scenario file"):
        find(str(tmp_path / "nowhere.toml"))
    assert find(str(path)) == path  # a path, not a name


def test_flags_given_override_the_scenario(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", """
model = "minilm-l6-standin"
batch = [20]
concurrency = [50]
workers = [1, 2]
baseline = true
broker_args = "--max-batch 256"
""")
    args = parse_args(["bench", "--scenario", str(path), "--concurrency", "1,4", "--no-baseline"])
    assert args.concurrency == (1, 4) and args.baseline is False  # given: the flags win
    assert args.batch == (20,) and args.workers == (1, 2) and args.broker_args == ["--max-batch", "256"]
    assert args.out == str(Path("bench/results/mine"))
    assert args.pairs == 2000  # neither: the flag's own default
    assert parse_args(["bench", "--scenario", str(path), "--out", "/tmp/x"]).out == "/tmp/x"


def test_a_bad_scenario_stops_the_command_with_its_message(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "typo", "concurency = 4\n")
    with pytest.raises(SystemExit) as exit_:
        parse_args(["bench", "--scenario", str(path)])
    assert exit_.value.code == 2 and "unknown key 'concurency'" in capsys.readouterr().err


def test_a_scenario_takes_exactly_the_bench_options() -> None:
    sub = argparse.ArgumentParser().add_subparsers()
    bench_parser(sub)
    dests = {a.dest for a in sub.choices["bench"]._actions} - {"help", "render", "scenario", "list_scenarios"}
    assert set(KEYS) == dests


def test_every_scenario_in_the_repo_loads_and_parses() -> None:
    scenarios = available([REPO_SCENARIOS])
    assert len(scenarios) >= 20
    for scenario in scenarios:
        assert scenario.options.get("title"), f"{scenario.path}: no title"
        args = parse_args(["bench", "--scenario", str(scenario.path)])
        assert args.out == str(Path("bench/results") / scenario.name)
        for key, value in scenario.options.items():
            assert getattr(args, key) == value, (scenario.name, key)


def test_list_scenarios_prints_names_and_titles(capsys) -> None:
    assert main(["bench", "--list-scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = available()[0]
    assert lines[0].split(None, 1) == [first.name, first.title]
    assert len(lines) == len(available())
