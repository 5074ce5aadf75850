"""Checkpoints that cannot run code: weights in safetensors (config + checksum in its metadata), training state in a
``torch.save`` file that is only ever read with ``torch.load(weights_only=True)``.

Layout of a checkpoint directory::

    <dir>/model.safetensors   weights (frozen text backbone excluded) + metadata: format, config JSON, fingerprints
    <dir>/train_state.pt      optimizer / scheduler / scaler state, step, configs (training only)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from .config import (ModelConfig, apply_runtime, config_fingerprint, config_to_dict, diff_configs,
                     model_config_from_dict)

log = logging.getLogger(__name__)

FORMAT = "g2vlm-checkpoint"
FORMAT_VERSION = "1"
WEIGHTS = "model.safetensors"
TRAIN_STATE = "train_state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is corrupt, of another format, or built from another configuration."""


def weights_path(path: str | Path) -> Path:
    p = Path(path)
    return p / WEIGHTS if p.is_dir() else p


def _state_to_save(model) -> dict[str, torch.Tensor]:
    skip = "text.backbone." if model.cfg.freeze_text else None
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if not (skip and k.startswith(skip))}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k]
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, model, train_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (unwrapped, not DDP) and optionally ``train_state`` into directory ``path`` atomically."""
    from safetensors.torch import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = _state_to_save(model)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model_config": json.dumps(config_to_dict(model.cfg), sort_keys=True),
            "config_fingerprint": config_fingerprint(model.cfg),
            "text_encoder": json.dumps(model.text.fingerprint(), sort_keys=True),
            "sha256": _digest(tensors), "extra": json.dumps(extra or {}, sort_keys=True)}
    tmp = path / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path / WEIGHTS)
    os.chmod(path / WEIGHTS, 0o644)  # safetensors writes 0600; checkpoints are meant to be shared
    if train_state is not None:
        tmp = path / (TRAIN_STATE + ".tmp")
        torch.save(train_state, tmp)
        os.replace(tmp, path / TRAIN_STATE)
    log.info("saved checkpoint %s", path)
    return path


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """(model config, tensors, metadata) of a checkpoint file or directory; raises CheckpointError if unusable."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    p = weights_path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(p))
    except Exception as e:  # safetensors raises its own error types for bad headers / truncation
        raise CheckpointError(f"{p} is not a readable safetensors checkpoint (corrupt or truncated?): {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a G2VLM checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p} has format_version {meta.get('format_version')!r}, this code reads "
                              f"{FORMAT_VERSION!r}")
    digest = _digest(tensors)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{p} is corrupt: weight checksum {digest[:12]} != recorded "
                              f"{meta.get('sha256', '')[:12]}")
    try:
        cfg = model_config_from_dict(json.loads(meta["model_config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{p} has an unreadable model config: {e}") from e
    if config_fingerprint(cfg) != meta.get("config_fingerprint"):
        raise CheckpointError(f"{p}: model config does not match its recorded fingerprint")
    return cfg, tensors, meta


def set_runtime_defaults(path: str | Path, **fields) -> dict:
    """Change the inference-only fields (RUNTIME_FIELDS, e.g. instance_grouping) that a checkpoint records as its
    defaults, in place; the weights, their checksum and the config fingerprint are unchanged. Returns the changed
    fields as {name: (old, new)}. ValueError for other fields or bad values, CheckpointError for a bad checkpoint."""
    from safetensors.torch import save_file
    cfg, tensors, meta = read_checkpoint(path)
    changed = apply_runtime(cfg, **fields)
    if changed:
        p = weights_path(path)
        meta = dict(meta, model_config=json.dumps(config_to_dict(cfg), sort_keys=True))
        tmp = p.with_name(p.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, p)
        os.chmod(p, 0o644)
    return changed


def load_weights(model, path: str | Path, strict_config: bool = True, new_modules: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint's weights into ``model``; raise CheckpointError naming config fields, text encoder
    properties or tensors that do not match. ``new_modules``: parameter-name prefixes of modules the checkpoint
    may lack (a head being added to a trained model); then the configs are not compared, but every tensor the
    checkpoint has must still fit. Returns the metadata."""
    return _load_read(model, path, *read_checkpoint(path), strict_config, new_modules)


def _load_read(model, path, cfg: ModelConfig, tensors: dict, meta: dict, strict_config: bool,
               new_modules: tuple[str, ...] = ()) -> dict:
    """load_weights on a checkpoint already read with read_checkpoint."""
    p = weights_path(path)
    if strict_config and not new_modules and config_fingerprint(cfg) != config_fingerprint(model.cfg):
        diffs = diff_configs(config_to_dict(cfg), config_to_dict(model.cfg))
        raise CheckpointError(f"{p} was trained with another model config: " + "; ".join(diffs))
    saved_text = json.loads(meta.get("text_encoder", "{}"))
    if saved_text != model.text.fingerprint():
        raise CheckpointError(f"{p} expects text encoder {saved_text} but the local one is {model.text.fingerprint()} "
                              f"(text_encoder={model.cfg.text_encoder!r})")
    own = _state_to_save(model)
    missing = sorted(k for k in set(own) - set(tensors) if not (new_modules and k.startswith(tuple(new_modules))))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{p} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"shape mismatches {shapes[:5]}")
    model.load_state_dict(tensors, strict=False)
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu", text_encoder: str | None = None):
    """Rebuild the model from the config stored in the checkpoint and load its weights (eval mode); the
    checkpoint's metadata is kept as ``model.checkpoint_meta``."""
    from .model import G2VLM
    cfg, tensors, meta = read_checkpoint(path)  # read (and checksummed) once
    if text_encoder is not None:
        cfg.text_encoder = text_encoder  # same encoder in another folder: checked by fingerprint on load
    model = G2VLM(cfg)
    model.checkpoint_meta = _load_read(model, path, cfg, tensors, meta, strict_config=False)
    return model.to(device).eval()


def training_image_hw(meta: dict) -> tuple[int, int] | None:
    """(H, W) a checkpoint was trained at, from its metadata (read_checkpoint's, or ``model.checkpoint_meta``
    of load_model); None when it does not record one."""
    try:
        hw = json.loads(meta.get("extra", "{}")).get("train", {}).get("image_hw")
        return (int(hw[0]), int(hw[1])) if hw else None
    except (ValueError, TypeError, AttributeError, IndexError):
        return None


def load_train_state(path: str | Path) -> dict | None:
    """The training state of a checkpoint directory (tensors and plain containers only), or None."""
    p = Path(path) / TRAIN_STATE
    if not p.is_file():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p} is not a loadable training state (corrupt, or not weights-only): {e}") from e
