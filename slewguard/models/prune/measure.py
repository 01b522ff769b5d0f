"""Size of a (pruned) model: body parameters (the paper's count), totals, bytes on disk, peak RSS.

The body is the stack of transformer layers (attention + FFN + their norms). Embeddings, the
final norm, BERT's pooler and the classification head are excluded: they do not shrink with
structural pruning (vocabulary trimming is reported separately through ``total_parameters``).

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers
    >>> dense = body_parameters(model)
    >>> surgeon_for(model).remove_layers(model, [1])
    >>> compression_ratio(dense, model)
    2.0
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from torch import nn

from slewguard.models.prune.surgery import surgeon_for

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def body_parameters(model: nn.Module) -> int:
    """Parameters in the transformer layers only.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> body_parameters(model)  # 2 layers: attention 4 x (32x32 + 32), FFN 32-64-32, norms
        17088
    """
    return sum(p.numel() for p in surgeon_for(model).layers(model).parameters())


def total_parameters(model: nn.Module) -> int:
    """All parameters, tied ones counted once.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert", vocab_size=64))
        >>> total_parameters(model), body_parameters(model)  # embeddings, pooler and head on top
        (28578, 17088)
    """
    return sum(p.numel() for p in model.parameters())


def compression_ratio(dense_body: int, model: nn.Module) -> float:
    """``dense_body / body_parameters(model)``: 2.0 means half the body is left.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> compression_ratio(body_parameters(model), model), compression_ratio(34176, model)
        (1.0, 2.0)
    """
    if dense_body <= 0:
        raise ValueError(f"dense_body={dense_body} must be > 0: pass body_parameters(dense_model)")
    return dense_body / body_parameters(model)


def weight_bytes(path: str | Path) -> int:
    """Bytes of weight files: one file, or every weight file (safetensors, bin, pt, gguf) in a dir.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as model_dir:
        ...     for name in ("model.safetensors", "head.bin", "README.md"):
        ...         _ = (Path(model_dir) / name).write_bytes(bytes(100))
        ...     print(weight_bytes(model_dir), weight_bytes(Path(model_dir) / "README.md"))
        200 100
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        raise ValueError(f"path={str(path)!r} does not exist: pass a weight file or a model dir")
    return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in WEIGHT_SUFFIXES)


_RSS_SCRIPT = """
import json, os, resource, sys, torch
import slewguard.models.export as export

WEIGHTS = SUFFIXES


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


def own_bytes(model_dir):
    # resident pages of anonymous mappings and of the model's weight files (smaps, not the
    # status counters, which lag by up to 64 pages per thread)
    total, path = 0, ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
            elif head[0] == "Rss:":
                weights = path.startswith(model_dir) and path.endswith(WEIGHTS)
                total += int(head[1]) * 1024 if weights or not path.startswith("/") else 0
    return total


model_dir = os.path.realpath(sys.argv[1])
linux = os.path.exists("/proc/self/smaps")
try:  # reset the high-water mark so import-time peaks do not hide the model's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
if linux:
    before, own_before = status("VmRSS:"), own_bytes(model_dir)
else:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = export.load_model(model_dir).eval()
ids = torch.ones((int(sys.argv[2]), int(sys.argv[3])), dtype=torch.long)
with torch.no_grad():
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
if linux:  # what stays (heap, weights) plus the transient peak above the end (activations)
    after = max(status("VmHWM:"), before)
    own = own_bytes(model_dir) - own_before + after - status("VmRSS:")
else:
    after = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, before)
    own = after - before
print(json.dumps({"import_rss_bytes": before, "peak_rss_bytes": after,
                  "model_bytes": max(own, 0)}))
""".replace("SUFFIXES", repr(WEIGHT_SUFFIXES))


def peak_inference_rss(model_dir: str | Path, batch_size: int = 1, seq_len: int = 64,
                       timeout_seconds: float = 600.0) -> dict[str, int]:
    """Peak resident memory of a fresh process that loads ``model_dir`` and runs one forward pass.

    Returns:
    - ``import_rss_bytes``: resident after importing torch and slewguard, before loading (on
      Linux the high-water mark is reset there);
    - ``peak_rss_bytes``: the high-water mark from loading to the end of the forward pass;
    - ``model_bytes``: what the model itself costs at that peak, its weights and the heap
      (activations, buffers): the peak less the anonymous memory at import and less the pages
      of shared libraries (torch's kernels, which a first forward pass faults in lazily and which
      every model of any size pays alike; read from /proc/self/smaps). Elsewhere it falls back to
      ``peak_rss_bytes - import_rss_bytes``, which includes those pages.

    For benches.

    Example:
        >>> peak_inference_rss("runs/pruned")["peak_rss_bytes"]   # doctest: +SKIP
        412340224
    """
    if not Path(model_dir).is_dir():
        raise ValueError(f"model_dir={str(model_dir)!r} is not a directory: save the model first")
    args = [sys.executable, "-c", _RSS_SCRIPT, str(model_dir), str(batch_size), str(seq_len)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_seconds,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {model_dir} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
