"""README.md stays true to the code: the generated troubleshooting table, commands, fields."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from ibpilot.cli import build_parser
from ibpilot.config import (
    AdapterConfig,
    AlertsConfig,
    Credentials,
    Instrument,
    Mandate,
    ScheduleSettings,
    StrategyConfig,
)
from ibpilot.errors import troubleshooting_markdown

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- troubleshooting:start (generated; do not edit by hand) -->\n"
END = "<!-- troubleshooting:end -->"


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_troubleshooting_table_is_exactly_the_generated_one(readme: str) -> None:
    assert readme.count(START) == 1
    assert readme.count(END) == 1
    table = readme[readme.index(START) + len(START) : readme.index(END)]
    assert table == troubleshooting_markdown(), (
        "README.md's troubleshooting table differs from the catalogue: paste the output of "
        "`python -c 'from ibpilot.errors import troubleshooting_markdown as t; print(t(), "
        'end="")\'` between the markers'
    )


def test_the_readme_opens_with_the_two_commands(readme: str) -> None:
    lines = readme.splitlines()
    assert lines[:3] == ["# ibpilot", "", "```sh"]
    assert lines[3].startswith("make demo    # ")
    assert lines[4].startswith("make test    # ")
    assert lines[5] == "```"


def _sub_commands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(name for action in actions for name in action.choices)


def test_every_sub_command_is_documented(readme: str) -> None:
    spans = re.findall(r"`ibpilot ([^`]*)`", readme)
    documented = {word for span in spans for word in re.split(r"[^a-z-]+", span.split(" [")[0])}
    for name in _sub_commands():
        assert name in documented, name


@pytest.mark.parametrize(
    ("model", "prefix"),
    [
        (AdapterConfig, ""),
        (Credentials, "credentials."),
        (AlertsConfig, "alerts."),
        (ScheduleSettings, "alerts.schedule."),
        (StrategyConfig, ""),
        (Mandate, ""),
    ],
)
def test_every_field_of_the_user_files_is_documented(
    readme: str, model: type[BaseModel], prefix: str
) -> None:
    for field in model.model_fields:
        assert re.search(rf"`{re.escape(prefix + field)}[`.]", readme), f"{model.__name__}.{field}"


def test_every_instrument_field_is_named(readme: str) -> None:
    for field in Instrument.model_fields:
        assert f"`{field}`" in readme, field
