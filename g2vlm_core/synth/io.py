"""Byte-deterministic file helpers of the synthetic dataset: PNG, NPZ and JSON (no timestamps anywhere)."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# A fixed zip timestamp: np.savez stamps the current time, which would break same-seed -> same-bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
DEPTH_SCALE = 1000.0  # PNG depth units per metre (millimetres)


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 (H, W) / (H, W, 3) or uint16 (H, W) image -> PNG (fixed compression level)."""
    if image.dtype == np.uint16 and image.ndim != 2:
        raise ValueError("uint16 PNGs must be single-channel")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png takes uint8 or uint16, got {image.dtype}")
    pil = Image.fromarray(np.ascontiguousarray(image))  # uint16 (H, W) -> mode "I;16"
    # compress_level 1: PNG writing dominates dataset time otherwise, and the files stay deterministic.
    pil.save(path, format="PNG", compress_level=1)


def read_png(path: Path) -> np.ndarray:
    """PNG -> numpy array (uint16 for 16-bit images, else uint8)."""
    with Image.open(path) as im:
        arr = np.asarray(im)
        return arr.astype(np.uint16) if im.mode.startswith("I") else arr


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """float metres -> uint16 millimetres; missing (0, non-finite) and out-of-range (> 65.535 m) become 0."""
    d = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.rint(d * DEPTH_SCALE)
    mm[(mm < 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


def mm_to_depth(depth_mm: np.ndarray) -> np.ndarray:
    return depth_mm.astype(np.float32) / np.float32(DEPTH_SCALE)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed equivalent with fixed zip timestamps (readable with np.load)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())
