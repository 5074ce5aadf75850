"""Checkpoints: bit-identical round trip, config mismatch and corruption errors, no unpickling of arbitrary code."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from g2vlm_core.model import G2VLM  # noqa: E402
from g2vlm_core.model.checkpoint import (CheckpointError, load_model, load_train_state, load_weights,  # noqa: E402
                                         read_checkpoint, save_checkpoint, set_runtime_defaults)
from g2vlm_core.model.data import ToyFrames, collate  # noqa: E402
from g2vlm_core.model.testing import tiny_config, write_tiny_text_encoder  # noqa: E402


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def saved(text_dir, tmp_path_factory):
    torch.manual_seed(1)
    model = G2VLM(tiny_config(text_dir))
    ds = ToyFrames(2, 48, 64, seed=9)
    batch = collate([ds[0], ds[1]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    _, losses = model(batch)  # one step so that BatchNorm statistics and optimizer state are non-trivial
    losses["total"].backward()
    opt.step()
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", model, {"optimizer": opt.state_dict(),
                                                                           "step": torch.tensor(1)})
    return model.eval(), path, batch


def test_round_trip_is_bit_identical(saved):
    model, path, batch = saved
    reloaded = load_model(path)
    with torch.no_grad():
        a, _ = model(batch, compute_loss=False)
        b, _ = reloaded(batch, compute_loss=False)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert reloaded.cfg == model.cfg


def test_train_state_loads_weights_only(saved):
    _, path, _ = saved
    state = load_train_state(path)
    assert int(state["step"]) == 1
    assert "state" in state["optimizer"]


def test_another_config_is_named(saved, text_dir):
    _, path, _ = saved
    other = G2VLM(tiny_config(text_dir, width=24))
    with pytest.raises(CheckpointError, match="width: 16 != 24"):
        load_weights(other, path)


def test_other_text_encoder_is_named(saved, tmp_path):
    _, path, _ = saved
    other_text = write_tiny_text_encoder(tmp_path / "bert48", hidden=48)
    with pytest.raises(CheckpointError, match="text encoder"):
        load_model(path, text_encoder=str(other_text))


def test_corrupt_and_truncated_files(saved, tmp_path):
    _, path, _ = saved
    data = (path / "model.safetensors").read_bytes()
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # a bit flip inside the weights
    (tmp_path / "flip").mkdir()
    (tmp_path / "flip" / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path / "flip")
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(tmp_path / "trunc")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "missing")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_refused(tmp_path):
    (tmp_path / "train_state.pt").write_bytes(pickle.dumps({"step": _Evil()}))
    with pytest.raises(CheckpointError, match="weights-only"):
        load_train_state(tmp_path)


def test_checkpoint_from_before_a_later_field_still_loads(saved, tmp_path):
    """Checkpoints written before ``amodal_boxes`` existed (their config lacks the key) load, with the field off."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    _, path, batch = saved
    src = path / "model.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["model_config"])
    assert cfg.pop("amodal_boxes") is False
    meta["model_config"] = json.dumps(cfg, sort_keys=True)  # as written by the code before the field
    (tmp_path / "old").mkdir()
    save_file(load_file(str(src)), str(tmp_path / "old" / "model.safetensors"), metadata=meta)
    old = load_model(tmp_path / "old")
    assert old.cfg.amodal_boxes is False and old.amodal is None


def test_a_new_head_starts_from_a_checkpoint_without_it(saved, text_dir):
    model, path, batch = saved
    grown = G2VLM(tiny_config(text_dir, amodal_boxes=True))
    with pytest.raises(CheckpointError):  # another config, and tensors the checkpoint lacks
        load_weights(grown, path)
    load_weights(grown, path, new_modules=("amodal.",))
    for k, v in model.state_dict().items():
        assert torch.equal(grown.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="missing"):  # only the named modules may be missing
        load_weights(G2VLM(tiny_config(text_dir, amodal_boxes=True)), path, new_modules=("answer.",))


def test_runtime_defaults_change_in_place_without_touching_the_weights(saved, tmp_path):
    import shutil
    model, path, batch = saved
    dst = tmp_path / "copy"
    shutil.copytree(path, dst)
    _, tensors, meta = read_checkpoint(dst)
    assert model.cfg.instance_grouping == "votes"
    assert set_runtime_defaults(dst, instance_grouping="components", min_instance_px=32) == {
        "instance_grouping": ("votes", "components"), "min_instance_px": (model.cfg.min_instance_px, 32)}
    cfg, tensors2, meta2 = read_checkpoint(dst)  # checksum and fingerprint still verify
    assert cfg.instance_grouping == "components" and cfg.min_instance_px == 32
    assert meta2["sha256"] == meta["sha256"] and all(torch.equal(tensors[k], tensors2[k]) for k in tensors)
    assert load_weights(G2VLM(model.cfg), dst)  # the same architecture still loads it
    assert set_runtime_defaults(dst, instance_grouping="components") == {}  # nothing to change
    with pytest.raises(ValueError, match="not runtime fields"):
        set_runtime_defaults(dst, d_model=8)
    with pytest.raises(ValueError, match="instance_grouping"):
        set_runtime_defaults(dst, instance_grouping="blobs")
    assert read_checkpoint(dst)[0].instance_grouping == "components"  # a refused change writes nothing
