"""Check that the built documentation site loads nothing from the network (`make docs` runs it).

A page may link to the web (an `<a href>` the reader chooses to follow), but nothing a browser
fetches by itself may come from outside the site: no external script, stylesheet, font, image or
frame in the HTML, no `url(http...)` or `@import` of a remote file in the CSS. The theme's
script bundle names CDNs for features this site does not use (Mermaid diagrams, an old-browser
polyfill, repository statistics): a page that would turn one on (a `mermaid` block, the
repository widget) fails the check too.

    python -m devtools.docs_offline site
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# a tag that makes the browser fetch, with a remote address
FETCHING_TAG = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(?:src|href|data|srcset)=[\"']?(?:https?:)?//",
    re.IGNORECASE,
)
REMOTE_CSS = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"']?)(?:https?:)?//", re.IGNORECASE)
# features whose scripts the theme would load from a CDN or an API
ONLINE_FEATURES = re.compile(r'class="[^"]*\b(?:mermaid|md-source)\b', re.IGNORECASE)


def problems(site: Path) -> list[str]:
    """One line per remote fetch found in the built site."""
    found: list[str] = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        checks = ((FETCHING_TAG, "remote resource"), (ONLINE_FEATURES, "online feature"))
        for pattern, what in checks:
            for match in pattern.finditer(text):
                found.append(f"{page.relative_to(site)}: {what}: {match.group(0)[:120]}")
    for sheet in sorted(site.rglob("*.css")):
        for match in REMOTE_CSS.finditer(sheet.read_text(encoding="utf-8")):
            found.append(f"{sheet.relative_to(site)}: remote stylesheet resource: {match.group(0)}")
    return found


def main(argv: list[str]) -> int:
    site = Path(argv[0] if argv else "site")
    if not (site / "index.html").is_file():
        sys.stderr.write(f"docs_offline: {site}/index.html not found: build the site first\n")
        return 2
    found = problems(site)
    for line in found:
        sys.stderr.write(f"docs_offline: {line}\n")
    if found:
        sys.stderr.write("docs_offline: the site must load nothing from the network\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
