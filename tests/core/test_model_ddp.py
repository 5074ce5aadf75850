"""DDP smoke run: torchrun, 2 CPU processes, gloo, tiny model and tiny text encoder, a few steps."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

from g2vlm_core.model.checkpoint import load_model, load_train_state
from g2vlm_core.model.config import config_to_dict
from g2vlm_core.model.testing import tiny_config, write_tiny_text_encoder

REPO = Path(__file__).resolve().parents[2]


def _run(cfg_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "g2vlm_core.model.train", "--config", str(cfg_path), "--toy", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_ddp_gloo_two_processes(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "tiny_bert")
    model = config_to_dict(tiny_config(text))
    cfg = {"model": model,
           "train": {"stage": 2, "out_dir": str(tmp_path / "run"), "image_hw": [32, 48], "batch_size": 2,
                     "grad_accum": 2, "max_steps": 4, "warmup_steps": 2, "log_every": 2, "eval_every": 4,
                     "eval_batches": 1, "ckpt_every": 2, "max_frames": 8, "device": "cpu"}}
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = _run(cfg_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "final" / "model.safetensors").is_file()
    assert int(load_train_state(run / "last")["step"]) == 4
    rows = list(csv.DictReader(open(run / "log.csv")))
    names = {row["name"] for row in rows if row["split"] == "train"}
    assert {"L_depth", "L_ground", "L_spatial", "L_text", "L_align", "total"} <= names
    assert any(row["split"] == "val" for row in rows)
    load_model(run / "final")  # rebuilt from the saved config

