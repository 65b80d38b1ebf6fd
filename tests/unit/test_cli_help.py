"""`disparo COMMAND --help` is what a first-time user reads before the README: every
command says what it does, and every flag what it takes and its default."""

from __future__ import annotations

import argparse

import pytest

from engine.cli import main
from engine.cli_parser import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_flag_and_argument_of_a_command_is_explained(name: str) -> None:
    command = _commands()[name]

    unexplained = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in command._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]

    assert unexplained == [], f"disparo {name} --help leaves these without a word"
    assert command.description, f"disparo {name} --help does not say what it does"


@pytest.mark.parametrize("name", sorted(set(_commands()) - {"schema", "openapi"}))
def test_config_says_which_file_is_read_when_it_is_left_out(name: str) -> None:
    [config] = [a for a in _commands()[name]._actions if "--config" in a.option_strings]

    assert config.help is not None
    assert "config/disparo.yaml" in config.help % {"default": config.default}


def test_the_help_of_why_explains_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["why", "--help"]) == 0
    text = capsys.readouterr().out

    assert "--flow FLOW           only the events of this flow" in text
    assert "--json                JSON Lines" in text


def test_the_top_level_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    # Scripts branch on them: README promises 0, 1, 2, 3, 4 and 130.
    assert main(["--help"]) == 0
    text = capsys.readouterr().out

    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {code}" in text
