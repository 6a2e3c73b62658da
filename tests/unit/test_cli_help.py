"""Every option of every subcommand says what it does in `--help` (`simulator --help` listed
its options bare), and `--version` is among the top-level options."""

from __future__ import annotations

import argparse

import pytest

from worker.cli import parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    ap = parser()
    (group,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_has_a_help_text(command: str) -> None:
    sub = _subparsers()[command]
    bare = [
        action.option_strings or action.dest
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert not bare, f"b24-delivery {command}: options without help: {bare}"


def test_version_is_a_top_level_option() -> None:
    assert "--version" in parser().format_help()
