"""The documentation site: it builds strictly, every page is in the nav, links resolve, and the
runbook's log lines and metrics are the daemon's own."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from slewguard.service.alerts import AlertMetrics
from slewguard.service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!relative", lambda loader, node: loader.construct_scalar(node))
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    return [p for value in nav.values() for p in _nav_pages(value)]


def _without_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def test_every_page_is_in_the_nav_once():
    nav = _nav_pages(_mkdocs_config()["nav"])
    assert sorted(nav) == PAGES
    assert len(nav) == len(set(nav))


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    """Links inside docs/ name a page or file there; links out of it name a file the site serves
    (scripts/docs_hooks.py), so they work both on a Git host and in the built site."""
    served = _hooks().SERVED
    text = _without_code((DOCS / page).read_text(encoding="utf-8"))
    for target in _LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (DOCS / page).parent / target.split("#")[0]
        assert path.exists(), f"{page}: link to {target} names no file"
        rel = path.resolve().relative_to(ROOT).as_posix()
        if not rel.startswith("docs/"):
            assert rel.startswith(served) and path.suffix != ".md", (
                f"{page}: {target} is outside docs/ and not served by the site (SERVED: {served})")


def test_readme_links_resolve():
    text = _without_code((ROOT / "README.md").read_text(encoding="utf-8"))
    targets = [t for t in _LINK.findall(text) if "://" not in t]
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        assert (ROOT / target.split("#")[0]).exists(), f"README links to missing {target}"


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: `pip install -e '.[docs]'` "
                        "(scripts/setup.sh installs it)")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "configuration" / "index.html").is_file()
    served = site / "repo" / "bench" / "results" / "transfer" / "transfer.png"
    assert served.is_file(), "the hook did not serve bench/results"
    example = (site / "example-config" / "index.html").read_text(encoding="utf-8")
    assert "outbox" in example and "--8&lt;--" not in example, "example config not included"


def _log_fragments() -> list[str]:
    page = (DOCS / "operations.md").read_text(encoding="utf-8")
    table = page.split("## Log lines", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [frag for row in rows for frag in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def test_runbook_log_lines_are_the_daemons():
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in (ROOT / "slewguard" / "service").rglob("*.py"))
    fragments = _log_fragments()
    assert len(fragments) >= 25
    missing = [f for f in fragments if f not in source]
    assert not missing, f"docs/operations.md lists log lines the daemon no longer writes: {missing}"


def test_runbook_lists_every_metric():
    registry = CollectorRegistry()
    Metrics(registry)
    AlertMetrics(registry)
    page = (DOCS / "operations.md").read_text(encoding="utf-8")
    table = page.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names = [(m.name.removeprefix("slewguard_"), m.type) for m in registry.collect()]
    assert len(names) >= 30
    missing = [name for name, kind in names
               if not re.search(rf"`{name}{'_total' if kind == 'counter' else ''}[`{{]", table)]
    assert not missing, f"metrics missing from the runbook's table: {missing}"


def test_runbook_has_every_alert_rule():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "slewguard.yml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    page = (DOCS / "operations.md").read_text(encoding="utf-8")
    assert alerts and all(f"| `{a}` |" in page for a in alerts)


_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
_INSIDER = re.compile(r"this session|the session's (?:starting|slower)|earlier session|the issue"
                      r"|issue \d|\bsitting", re.I)


@pytest.mark.parametrize("page", ["README.md"] + [f"docs/{p}" for p in PAGES])
def test_no_insider_words(page):
    """No "this session", "the issue's target" or commit hash a reader cannot place; the one
    exception is benchmarks.md's defaults section, which says what its hashes are."""
    text = (ROOT / page).read_text(encoding="utf-8")
    if page == "docs/benchmarks.md":
        text = text.split("## Numbers behind the code's defaults", 1)[0]
    assert not _INSIDER.findall(text), page
    words = [w for w in _HASH.findall(_without_code(text)) if not w.isdigit()]
    assert not words, f"{page}: commit-like hashes {words}"


@pytest.mark.parametrize("page", PAGES)
def test_no_escaped_pipe_inside_code_in_tables(page):
    """`a \\| b` inside a table cell renders with its backslash on the site."""
    rows = [line for line in (DOCS / page).read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]
    bad = [row for row in rows for span in re.findall(r"`([^`]*)`", row) if "\\|" in span]
    assert not bad, f"{page}: {bad[:2]}"
