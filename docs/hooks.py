"""MkDocs hooks: the README, ARCHITECTURE.md, CHANGELOG.md and LICENSE at the root of the checkout are pages of the
site too, so each fact has one home and reads right both on a code host and on the site.

Links are written for the repository (``docs/rest.md`` from the README, ``../ARCHITECTURE.md`` from a page under
``docs/``); this hook rewrites each relative link that points at a file which is a page of the site into the link
between the two pages. Any other link is left alone, so ``mkdocs build --strict`` still fails on a broken one.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent

# repository path -> page of the site (under docs_dir)
ROOT_PAGES = {
    "README.md": "index.md",
    "ARCHITECTURE.md": "architecture.md",
    "CHANGELOG.md": "changelog.md",
    "LICENSE": "license.md",
}
# [text](target) and ![alt](target) — not autolinks; the target has no spaces
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repository_path(page_path: str) -> str:
    """Where the page at ``page_path`` (relative to docs_dir) lives in the repository."""
    for source, page in ROOT_PAGES.items():
        if page == page_path:
            return source
    return posixpath.join("docs", page_path)


def site_page(path: str) -> str | None:
    """The page of the site that the repository file ``path`` is, if it is one."""
    if path in ROOT_PAGES:
        return ROOT_PAGES[path]
    if path.startswith("docs/"):  # a page, or a file the site carries (an image)
        return path.removeprefix("docs/")
    return None


def rewrite_links(markdown: str, page_path: str) -> str:
    here = posixpath.dirname(repository_path(page_path))
    page_dir = posixpath.dirname(page_path)

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        if SCHEME.match(target) or target.startswith(("#", "/")):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(here, path))
        page = site_page(resolved)
        if page is None:
            return match.group(0)
        return f"]({posixpath.relpath(page, page_dir or '.')}{hash_}{anchor})"

    return LINK.sub(rewrite, markdown)


def root_page_content(source: str) -> str:
    text = (ROOT / source).read_text()
    if source == "LICENSE":
        return f"# License\n\n```text\n{text}```\n"
    return text


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for source, page in ROOT_PAGES.items():
        files.append(File.generated(config, page, content=root_page_content(source)))
    return files


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    return rewrite_links(markdown, page.file.src_uri)


def on_serve(server: Any, config: MkDocsConfig, builder: Any, **_: Any) -> Any:
    for source in ROOT_PAGES:
        server.watch(str(ROOT / source))
    return server
