"""Single-process training: schedule, overrides, a short run that lowers the loss, checkpoint resume."""
from __future__ import annotations

import csv
import math

import pytest

from g2vlm_core.model.checkpoint import load_train_state
from g2vlm_core.model.config import Config, LossConfig, TrainConfig
from g2vlm_core.model.testing import tiny_config, write_tiny_text_encoder
from g2vlm_core.model.train import lr_at, parse_overrides, train


def test_warmup_cosine_schedule():
    t = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, t) == pytest.approx(0.1)
    assert lr_at(9, t) == pytest.approx(1.0)
    assert lr_at(60, t) == pytest.approx(0.55)
    assert lr_at(110, t) == pytest.approx(0.1)
    assert all(lr_at(s, t) >= lr_at(s + 1, t) for s in range(10, 110))


def test_overrides_parse_yaml_values_only():
    assert parse_overrides(["train.lr=1e-3", "train.image_hw=[8, 8]", "model.text_encoder=os.system('x')"]) == {
        "train": {"lr": 1e-3, "image_hw": [8, 8]}, "model": {"text_encoder": "os.system('x')"}}
    with pytest.raises(ValueError):
        parse_overrides(["lr=3"])


def _total(path):
    return [float(r["value"]) for r in csv.DictReader(open(path)) if r["split"] == "train" and r["name"] == "total"]


def test_short_run_learns_and_resumes(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "tiny_bert")
    t = TrainConfig(stage=1, out_dir=str(tmp_path / "run"), image_hw=(32, 48), batch_size=2, max_steps=20, threads=1,
                    warmup_steps=3, lr=3e-3, log_every=5, eval_every=0, ckpt_every=10, max_frames=8,
                    optimizer="adamw", device="cpu")
    loss = LossConfig(w_align=0, w_ground=0, w_text=0, w_spatial=0)
    cfg = Config(tiny_config(text, dropout=0.0), loss, t)
    train(cfg, toy=True)
    totals = _total(tmp_path / "run" / "log.csv")
    assert len(totals) == 4 and all(math.isfinite(x) for x in totals)
    assert totals[-1] < totals[0]
    cfg.train.max_steps = 22
    cfg.train.optimizer = "sgd"
    cfg.train.resume = True
    with pytest.raises(ValueError):  # the saved optimizer state is AdamW's: a different optimizer is refused
        train(cfg, toy=True)
    cfg.train.optimizer = "adamw"
    train(cfg, toy=True)
    assert int(load_train_state(tmp_path / "run" / "last")["step"]) == 22


def test_stage3_trains_only_the_new_head(tmp_path):
    """A head added to a trained model (train.trainable): the checkpoint it starts from lacks the head, every
    other weight comes out unchanged, the head's loss falls."""
    import torch

    from g2vlm_core.model.checkpoint import read_checkpoint
    text = write_tiny_text_encoder(tmp_path / "tiny_bert")
    base = dict(image_hw=(32, 48), batch_size=2, threads=1, warmup_steps=2, log_every=5, eval_every=0,
                ckpt_every=100, max_frames=8, device="cpu")
    first = train(Config(tiny_config(text, dropout=0.0), LossConfig(w_align=0, w_ground=0, w_text=0),
                         TrainConfig(stage=1, out_dir=str(tmp_path / "s1"), max_steps=4, **base)), toy=True)
    zero = {k: 0.0 for k in ("w_depth", "w_normal", "w_surface_smoothness", "w_reconstruction", "w_confidence",
                             "w_semantic", "w_instance", "w_align", "w_ground", "w_spatial", "w_text")}
    cfg = Config(tiny_config(text, amodal_boxes=True), LossConfig(w_box=1.0, **zero),
                 TrainConfig(stage=3, out_dir=str(tmp_path / "s3"), max_steps=30, lr=1e-2, init_from=str(first),
                             trainable=("amodal.",), **base))
    final = train(cfg, toy=True)
    _, before, _ = read_checkpoint(first)
    _, after, _ = read_checkpoint(final)
    assert set(after) - set(before) and all(k.startswith("amodal.") for k in set(after) - set(before))
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed though frozen"
    boxes = [float(r["value"]) for r in csv.DictReader(open(tmp_path / "s3" / "log.csv")) if r["name"] == "L_box"]
    assert len(boxes) >= 4 and boxes[-1] < boxes[0]
