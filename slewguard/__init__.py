"""slewguard: slewing-bearing fault diagnosis at the edge with a pruned language model.

The package has three parts: ``slewguard.signal`` (vibration to features to text),
``slewguard.models`` (classifier, cascaded pruning, export) and ``slewguard.service`` (the daemon).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slewguard")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
