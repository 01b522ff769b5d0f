"""mkdocs hooks: the repository files the docs link to are served by the site too.

A page links to a file outside docs/ the way a Git host resolves it (``../deploy/x.yaml``,
``../bench/results/transfer/transfer.png``), so the link works in the repository as well. For the
built site, every file under ``SERVED`` is added at ``repo/<path>`` and such links are rewritten
to point there; a link to anything else outside docs/ stays broken and fails the strict build.
Markdown files are left out: they would be pages missing from the nav.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tests import SERVED without mkdocs installed
    from mkdocs.structure.files import Files

REPO = Path(__file__).resolve().parents[1]
SERVED = ("deploy", "bench/results", "docker-compose.yml")
PREFIX = "repo"
_LINK = re.compile(r"(\]\()([^)\s#]+)")


def on_files(files: Files, config) -> Files:
    from mkdocs.structure.files import File

    for root in SERVED:
        base = REPO / root
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in paths:
            if path.suffix != ".md" and "__pycache__" not in path.parts:
                rel = path.relative_to(REPO).as_posix()
                files.append(File.generated(config, f"{PREFIX}/{rel}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        if "://" in target:
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(page_dir, target))
        if not resolved.startswith("../") or resolved.startswith("../../"):
            return match.group(0)
        served = posixpath.relpath(f"{PREFIX}/{resolved[3:]}", page_dir or ".")
        return match.group(1) + served

    return _LINK.sub(rewrite, markdown)
