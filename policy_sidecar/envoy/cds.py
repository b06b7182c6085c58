"""The file-based CDS resource Envoy watches: the provider accounts' clusters.

Envoy's `path_config_source` with a `watched_directory` reloads the file when a file is
*moved* into that directory, so a write is a temporary file in the same directory
renamed over the target: Envoy never reads a half-written file, and an unchanged set of
clusters is not rewritten (no needless cluster warm-up).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cds_text", "write_cds_file"]


def cds_text(clusters: Sequence[dict[str, Any]]) -> str:
    """A CDS discovery file (JSON, which is YAML) holding `clusters`."""
    return json.dumps({"resources": list(clusters)}, indent=2, sort_keys=True) + "\n"


def write_cds_file(path: str | Path, clusters: Sequence[dict[str, Any]]) -> bool:
    """Atomically replace `path` with `clusters`; False when it already held them."""
    target = Path(path)
    text = cds_text(clusters)
    try:
        if target.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".cds-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
