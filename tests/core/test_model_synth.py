"""The model on the real synthetic format: SynthFrames batches train a step, and the eval command runs end to end."""
from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from g2vlm_core.model import G2VLM  # noqa: E402
from g2vlm_core.model.checkpoint import save_checkpoint  # noqa: E402
from g2vlm_core.model.config import Config  # noqa: E402
from g2vlm_core.model.data import SynthFrames, collate  # noqa: E402
from g2vlm_core.model.evaluate import evaluate_maps, evaluate_split  # noqa: E402
from g2vlm_core.model.inference import G2VLMInference  # noqa: E402
from g2vlm_core.model.testing import tiny_config, write_tiny_text_encoder  # noqa: E402
from g2vlm_core.model.train import fill_dataset_fields  # noqa: E402


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from g2vlm_core.synth.cli import main
    root = tmp_path_factory.mktemp("synth")
    assert main(["--scenes", "1", "--frames", "2", "--width", "96", "--height", "72", "--split", "test",
                 "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def model_cfg(tmp_path_factory, synth_root):
    text = write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))
    cfg = Config(model=tiny_config(text, semantic_names=(), thing_ids=(), answer_vocab=("no", "yes")))
    ds = SynthFrames(str(synth_root), "test", (48, 64))
    fill_dataset_fields(cfg, ds.categories)
    return cfg.model


def test_synth_batches_train(synth_root, model_cfg):
    ds = SynthFrames(str(synth_root), "test", (48, 64))
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["rgb"].shape == (2, 3, 48, 64) and batch["obj_valid"].any()
    assert model_cfg.semantic_names == ds.categories and 0 not in model_cfg.thing_ids
    model = G2VLM(model_cfg)
    out, losses = model(batch)
    assert math.isfinite(float(losses["total"].detach()))
    losses["total"].backward()


def test_evaluate_runs(synth_root, model_cfg, tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "ck", G2VLM(model_cfg))
    res = evaluate_split(G2VLMInference.from_checkpoint(path), str(synth_root), "test", image_hw=(48, 64))
    assert res["frames"] == 2
    for k in ("depth_rmse_raw", "depth_rmse_refined", "relation_accuracy", "instance_mean_best_iou",
              "single_view_box_ceiling_025"):
        assert math.isfinite(res[k]), k


def test_map_grounding_runs_the_pipeline_over_each_scene(synth_root, model_cfg, tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "ck", G2VLM(model_cfg), extra={"train": {"image_hw": [48, 64]}})
    inf = G2VLMInference.from_checkpoint(path)
    assert inf.training_image_hw == (48, 64)
    res = evaluate_maps(inf, str(synth_root), "test", progress=False)
    assert res["map_scenes"] == 1
    assert 0.0 <= res["map_objects_matched_025"] <= 1.0
    n = res["map_grounding_expressions"]
    assert n == 0 or 0.0 <= res["map_grounding_acc_025"] <= 1.0
    assert n == 0 or 0.0 <= res["map_query_engine_acc_025"] <= 1.0
    assert res["map_grounding_acc_050"] <= res["map_grounding_acc_025"] or n == 0
