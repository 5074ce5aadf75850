"""Map folders written atomically (a staging folder beside the target, fsync, rename) with a manifest loading checks.

A save writes every file into ``.<name>.saving`` beside the target, fsyncs them, writes ``manifest.json`` (format,
version, each file's size and SHA-256) last, then moves the old folder to ``.<name>.previous``, the new one into
place, and deletes the old one. A process killed at any point leaves either the old folder or the new one whole:
``recover`` (run by every save and load) finishes or rolls back an interrupted swap. One writer per folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"
FORMAT = "g2vlm_map"
VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20


class MapFolderError(ValueError):
    """A map folder is missing, incomplete, over a size limit or does not match its manifest."""


def _staging(target: Path) -> Path:
    return target.parent / f".{target.name}.saving"


def _previous(target: Path) -> Path:
    return target.parent / f".{target.name}.previous"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recover(target: str | Path) -> None:
    """Complete or roll back a save that was interrupted between its two renames, and drop leftovers."""
    target = Path(target)
    staging, previous = _staging(target), _previous(target)
    if not target.exists():
        if staging.is_dir() and _check(staging, (), None, verify=True) is not None:
            os.rename(staging, target)  # the new map was complete: the crash came after moving the old one aside
        elif previous.is_dir():
            os.rename(previous, target)
        if target.exists():
            _fsync_path(target.parent)
    for leftover in (staging, previous):
        shutil.rmtree(leftover, ignore_errors=True)


def write(target: str | Path, writers: dict[str, Callable[[Path], object]], info: dict | None = None) -> Path:
    """Write a map folder at ``target``: ``writers[name](path)`` writes file ``name``; ``info`` goes into the manifest.

    Refuses (MapFolderError) to replace an existing non-empty folder that has no manifest: it is not a map."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    if target.exists():
        if not target.is_dir():
            raise MapFolderError(f"{target} exists and is not a folder")
        if not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise MapFolderError(f"{target} is not a map folder (no {MANIFEST}) and not empty: refusing to replace it")
    staging = _staging(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        files = {}
        for name, write_file in writers.items():
            path = staging / name
            write_file(path)
            _fsync_path(path)
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = {"format": FORMAT, "version": VERSION, "files": files, **(info or {})}
        with open(staging / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_path(staging)
        if target.exists():
            os.rename(target, _previous(target))
        os.rename(staging, target)
        _fsync_path(target.parent)
    finally:
        recover(target)  # after success: deletes the old folder; after an error: puts back a whole one
    return target


def read(target: str | Path, required: tuple[str, ...], max_file_bytes: int | None = None) -> dict:
    """The manifest of the map folder ``target`` after checking it: format and version, the ``required`` files
    listed, every listed file present with its recorded size (at most ``max_file_bytes``) and SHA-256."""
    target = Path(target)
    recover(target)
    if not target.exists():
        raise FileNotFoundError(f"{target} does not exist")
    if not target.is_dir():
        raise MapFolderError(f"{target} is not a folder")
    return _check(target, required, max_file_bytes, verify=False)


def _check(folder: Path, required: tuple[str, ...], max_file_bytes: int | None, verify: bool) -> dict | None:
    """The checked manifest; with ``verify`` None instead of raising (recover asks whether a folder is whole)."""
    try:
        path = folder / MANIFEST
        if not path.is_file():
            raise MapFolderError(f"{folder} has no {MANIFEST}: not a map folder, or a save that did not finish")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise MapFolderError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            manifest = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MapFolderError(f"{path} is not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MapFolderError(f"{path} is not a {FORMAT} manifest")
        if manifest.get("version") != VERSION:
            raise MapFolderError(f"{path}: map version {manifest.get('version')!r}, this build reads {VERSION}")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise MapFolderError(f"{path}: 'files' must be an object")
        for name in required:
            if name not in files:
                raise MapFolderError(f"{path} does not list {name}")
        for name, entry in files.items():
            if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST):
                raise MapFolderError(f"{path} lists an invalid file name {name!r}")
            if not (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and
                    isinstance(entry.get("sha256"), str)):
                raise MapFolderError(f"{path}: entry of {name} needs 'bytes' and 'sha256'")
            f = folder / name
            if not f.is_file():
                raise MapFolderError(f"{f} is missing")
            size = f.stat().st_size
            if size != entry["bytes"]:
                raise MapFolderError(f"{f} has {size} bytes, the manifest says {entry['bytes']} (truncated or changed)")
            if max_file_bytes is not None and size > max_file_bytes:
                raise MapFolderError(f"{f} is {size / 2**20:.1f} MB, over the limit of {max_file_bytes / 2**20:.1f} MB")
            if _sha256(f) != entry["sha256"]:
                raise MapFolderError(f"{f} does not match its checksum in the manifest (corrupt or changed)")
        return manifest
    except MapFolderError:
        if verify:
            return None
        raise
