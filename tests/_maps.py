"""Test helper shared by the core and ROS map tests: re-sign a tampered map folder's manifest."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def remanifest(folder: Path) -> None:
    """Rewrite a map folder's manifest for its files as they are now: a tampered map that passes the integrity
    check, so that the content checks behind it are exercised. A folder without a manifest (a build that wrote none)
    is left as it is."""
    if not (folder / "manifest.json").is_file():
        return
    m = json.loads((folder / "manifest.json").read_text())
    for name in m["files"]:
        data = (folder / name).read_bytes()
        m["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(m))
