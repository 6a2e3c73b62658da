"""The configuration reference, generated from the settings table in `worker/settings.py`.

Each `Settings` field gives one row: its environment variable (`ENV_NAMES`), its default, what it
accepts (`RULES`) and its meaning, the `#:` comment lines right above the field. The docs site
renders this at build time (`devtools/docs_hooks.py`); nothing of it is copied by hand, so a
setting added with a `#:` comment appears by itself. `python -m devtools.settings_reference`
prints the table.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys

from worker import settings as settings_module
from worker.settings import ENV_NAMES, RULES, SECRET_FIELDS, Settings


class MissingComment(Exception):
    """Raised when a `Settings` field has no `#:` comment: the reference would have a hole."""


def field_comments() -> dict[str, str]:
    """Field name → the `#:` comment lines directly above it, joined ("" when it has none)."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == Settings.__name__)
    comments: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        row = node.lineno - 2  # the line above, 0-based
        while row >= 0 and lines[row].strip().startswith("#:"):
            above.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        comments[node.target.id] = " ".join(above)
    return comments


def _default(field: dataclasses.Field[object]) -> str:
    if field.name in SECRET_FIELDS or field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, default, accepts, meaning) for every setting, in the table's order."""
    comments = field_comments()
    missing = [f.name for f in dataclasses.fields(Settings) if not comments.get(f.name)]
    if missing:
        raise MissingComment(
            "worker/settings.py: give each of these Settings fields a `#:` comment line above "
            "it (its meaning, for the configuration reference): " + ", ".join(missing)
        )
    return [
        (ENV_NAMES[f.name], _default(f), RULES[f.name][1], comments[f.name])
        for f in dataclasses.fields(Settings)
    ]


def markdown() -> str:
    """The reference as one Markdown table (two columns, so it fits a page: the variable and
    its default, then its meaning and what it accepts), plus the limits the settings compute."""
    out = ["| variable (default) | meaning (accepts) |", "|---|---|"]
    out += [
        f"| `{name}`<br>{default} | {_cell(meaning)}<br>*accepts:* {_cell(rule)} |"
        for name, default, rule, meaning in rows()
    ]
    defaults = Settings()
    out += [
        "",
        f"At the defaults a task's hard time limit is {defaults.task_time_limit_s:g} s "
        "(`Settings.task_time_limit_s`): the stop grace of a worker's container must be longer.",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
