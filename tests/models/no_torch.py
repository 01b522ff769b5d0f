"""A child-process environment in which ``import torch`` and ``import transformers`` fail.

``blocked_env(tmp_path)`` writes a ``sitecustomize.py`` that puts a meta-path finder first,
refusing both packages (and their submodules), and returns an environment whose PYTHONPATH
starts there, followed by the repository. ``blocked=`` refuses other top-level packages too
(e.g. matplotlib: a base install without the plots extra).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "transformers")
BLOCKER = '''
import importlib.abc
import sys

BLOCKED = __BLOCKED__


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: serving without "
                                      "torch)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
'''


def blocked_env(tmp_path: Path, blocked: tuple[str, ...] = BLOCKED) -> dict[str, str]:
    """os.environ with torch and transformers (or ``blocked``) made unimportable for child
    processes."""
    folder = Path(tmp_path) / ("no-torch" if blocked == BLOCKED else "no-" + "-".join(blocked))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER.replace("__BLOCKED__", repr(tuple(blocked))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
