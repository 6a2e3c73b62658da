"""The README stays an introduction whose links all resolve, the configuration reference is
generated from the settings table (every setting in it, with its meaning), and the offline check
of the built site catches a page that would load something from the network. (`make docs` builds
the site itself, strictly, in CI.)"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from devtools import docs_offline, settings_reference
from tests.harness import ROOT
from worker.settings import ENV_NAMES, Settings

README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs write it (lowercase, punctuation dropped)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    text = markdown.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_readme_is_an_introduction_of_at_most_150_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move the detail to docs/"


def test_readme_names_the_fleets_operating_story_with_links() -> None:
    text = README.read_text(encoding="utf-8")
    for topic, page in (
        ("Sentinel", "docs/operations/sentinel.md"),
        ("RabbitMQ", "docs/operations/brokers.md"),
        ("probes", "docs/operations/probes.md"),
    ):
        assert re.search(rf"\[[^\]]*{topic}[^\]]*\]\({re.escape(page)}\)", text), topic


def test_every_readme_link_to_the_repository_resolves() -> None:
    links = LINK.findall(README.read_text(encoding="utf-8"))
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local, "the README links to its documentation"
    for link in local:
        path, _, anchor = link.partition("#")
        target = (README.parent / path).resolve() if path else README
        assert target.exists(), f"README.md links to {link}: no such file"
        if anchor:
            assert anchor in _anchors(target), f"README.md links to {link}: no such heading"


def test_the_kept_pages_stay_where_they_are() -> None:
    for page in ("design.md", "bitrix24.md", "threat-model.md"):
        assert (ROOT / "docs" / page).is_file(), page


def test_the_configuration_reference_has_every_setting_with_its_meaning() -> None:
    rows = settings_reference.rows()
    assert [name for name, *_ in rows] == [ENV_NAMES[f.name] for f in dataclasses.fields(Settings)]
    for name, default, rule, meaning in rows:
        assert default and rule and meaning, name
    table = settings_reference.markdown()
    assert "| `DELIVERY_BATCH_SIZE`<br>`50` | items per " in table
    assert "<br>*accepts:* an integer from 1 to 1000 |" in table
    # a secret's default is never rendered, even if one were set in code
    assert "| `BITRIX24_CLIENT_SECRET`<br>unset |" in table


def test_the_reference_is_generated_where_the_docs_ask_for_it() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "<!-- generated: settings -->" in page
    assert "DELIVERY_BATCH_SIZE" not in page, "the table is generated, never copied by hand"


def _site(tmp_path: Path, html: str, css: str = "") -> Path:
    (tmp_path / "index.html").write_text(html, encoding="utf-8")
    (tmp_path / "main.css").write_text(css, encoding="utf-8")
    return tmp_path


def test_the_offline_check_passes_a_site_that_only_links_to_the_web(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        '<link rel="stylesheet" href="assets/main.css"><script src="assets/bundle.js"></script>'
        '<a href="https://semver.org/">SemVer</a>',
        "a{background:url(\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>\")}",
    )
    assert docs_offline.problems(site) == []
    assert docs_offline.main([str(site)]) == 0


@pytest.mark.parametrize(
    ("html", "css"),
    [
        ('<link href="https://fonts.googleapis.com/css?family=Roboto" rel="stylesheet">', ""),
        ('<script src="//www.googletagmanager.com/gtag/js"></script>', ""),
        ("<img src='https://example.com/logo.png'>", ""),
        ('<pre class="mermaid">graph LR</pre>', ""),
        ("", '@import "https://fonts.googleapis.com/css2";'),
        ("", "body{font:url(https://fonts.gstatic.com/x.woff2)}"),
    ],
)
def test_the_offline_check_fails_a_site_that_fetches(tmp_path: Path, html: str, css: str) -> None:
    site = _site(tmp_path, f"<html>{html}</html>", css)
    assert docs_offline.problems(site)
    assert docs_offline.main([str(site)]) == 1
