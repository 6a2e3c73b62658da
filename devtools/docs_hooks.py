"""MkDocs hooks (mkdocs.yml `hooks:`): the generated parts of the documentation site.

- `<!-- generated: settings -->` becomes the configuration reference, generated from
  `worker/settings.py` (`devtools/settings_reference.py`).
- `<!-- include: PATH -->` becomes the file at PATH (from the repository's root: the benchmark
  tables `make bench` / `make capacity` write, `CHANGELOG.md`), its headings one level down and
  its `docs/` links made relative to the site. A missing file fails the build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # mkdocs loads this file by path
    sys.path.insert(0, str(ROOT))

from mkdocs.exceptions import PluginError  # noqa: E402

SETTINGS_MARK = "<!-- generated: settings -->"
INCLUDE = re.compile(r"<!-- include: (?P<path>[\w./-]+) -->")


def _included(path: str) -> str:
    file = (ROOT / path).resolve()
    if ROOT not in file.parents or not file.is_file():
        raise PluginError(f"include: {path} is not a file of the repository")
    text = file.read_text(encoding="utf-8")
    text = re.sub(r"^(#+) ", r"\1# ", text, flags=re.MULTILINE)
    return text.replace("](docs/", "](")


def on_page_markdown(markdown: str, **_: Any) -> str:
    if SETTINGS_MARK in markdown:
        from devtools.settings_reference import MissingComment
        from devtools.settings_reference import markdown as reference

        try:
            markdown = markdown.replace(SETTINGS_MARK, reference())
        except MissingComment as exc:
            raise PluginError(str(exc)) from None
    return INCLUDE.sub(lambda m: _included(m.group("path")), markdown)
