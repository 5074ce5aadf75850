"""The study runner, report writer and CLI on a tiny run (one small synthetic scene, two real frames per dataset)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from g2vlm_core.eval.cli import main
from g2vlm_core.eval.config import StudyConfigError, load_study_config, study_from_dict
from g2vlm_core.eval.variants import TRAIN_MISSING, ModelUnavailableError, train_learned_variant

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_study(real_data_dir: Path, **over) -> dict:
    d = {"base_dir": str(REPO), "reference_variant": "geometry_pipeline", "seeds": [0],
         "variants": [{"name": "full", "kind": "learned", "description": "the model"},
                      {"name": "geometry_pipeline", "kind": "geometry", "description": "no model"},
                      {"name": "gt_graph_oracle", "kind": "oracle", "description": "GT graph"}],
         "synthetic": {"num_scenes": 1, "frames_per_scene": 6, "width": 160, "height": 120, "noise": "kinect"},
         "real": {"datasets": [str(real_data_dir / "3dmatch_seq01_5"), str(real_data_dir / "icl_nuim_livingroom1_5")],
                  "max_frames": 2},
         "bootstrap": {"n_resamples": 200, "test_resamples": 200}}
    d.update(over)
    return d


@pytest.fixture
def no_training_module(monkeypatch):
    """Simulate a checkout without g2vlm_core.model.train (None in sys.modules makes the import fail)."""
    monkeypatch.setitem(sys.modules, "g2vlm_core.model.train", None)


def test_learned_variant_gate_raises_the_clear_error(real_data_dir, no_training_module):
    study = study_from_dict(tiny_study(real_data_dir))
    with pytest.raises(ModelUnavailableError, match="^model training not available yet: g2vlm_core.model.train "
                                                    "missing$"):
        train_learned_variant(study.variant("full"), 0, study)


def test_tiny_run_writes_valid_report_json_and_png(tmp_path, real_data_dir, no_training_module):
    from g2vlm_core.eval.report import write_report
    from g2vlm_core.eval.study import run_study

    study = study_from_dict(tiny_study(real_data_dir))
    results = run_study(study, progress=False)
    paths = write_report(results, tmp_path / "out", "g2vlm-eval --config tiny.yaml")

    data = json.loads(paths["json"].read_text())  # strict JSON: NaN was written as null
    assert data["variants"]["full"]["status"] == "not run"
    assert data["variants"]["full"]["reason"] == TRAIN_MISSING
    assert "summary" in data and "full" not in data["summary"]  # never a number for a variant that did not run
    geo = data["summary"]["geometry_pipeline"]
    assert geo["chamfer_m"]["ci"]["estimate"] < 0.05 and geo["fscore_5cm"]["ci"]["estimate"] > 0.8
    # per-scene values are kept, and the per-query outcomes behind them
    scene = data["scenes"][0]
    rec = data["variants"]["geometry_pipeline"]["per_seed"]["-"][scene]
    assert len(geo["chamfer_m"]["ci"]["values"]) == 1 and rec["metrics"]["chamfer_m"] > 0
    oracle = data["variants"]["gt_graph_oracle"]["per_seed"]["-"][scene]
    assert oracle["queries"] and all(q["hits"]["acc@0.5"] == 1.0 for q in oracle["queries"])
    # the oracle is tested against the reference (geometry_pipeline); one scene -> exact sign flip, p = 1
    t = data["summary"]["gt_graph_oracle"]["acc@0.25"]["test"]
    assert t["n"] == 1 and t["p_value"] == pytest.approx(1.0) and "p_holm" in t
    assert [r["n_frames"] for r in data["real"]] == [2, 2]
    assert all(np.isfinite(r["metrics"]["consistency_median_m"]) for r in data["real"])

    md = paths["markdown"].read_text()
    assert md.startswith("# G2VLM evaluation study")
    assert "Regenerate: `g2vlm-eval --config tiny.yaml`" in md
    assert f"not run: {TRAIN_MISSING}" in md
    for header in ("### Reconstruction", "### Scene graph", "### Reasoning", "## Real data"):
        assert header in md
    table_rows = [line for line in md.splitlines() if line.startswith("| full |")]
    assert table_rows and all(set(c.strip() for c in r.strip("|").split("|")[1:]) == {"not run"}
                              for r in table_rows[1:])
    # every table row has as many cells as its header
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            n = lines[i - 1].count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].count("|") == n, lines[j]
                j += 1
    pngs = sorted((tmp_path / "out" / "figures").glob("*.png"))
    assert len(pngs) == 4  # CI bars, one synthetic error cloud, two real consistency clouds
    for p in pngs:
        assert p.read_bytes()[:8] == PNG and f"figures/{p.name}" in md


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(bogus=1), "unknown top-level key 'bogus'"),
    (lambda d: d["variants"][0].update(kind="magic"), "kind must be one of"),
    (lambda d: d.update(reference_variant="nope"), "reference_variant 'nope' is not one of the variants"),
    (lambda d: d["synthetic"].update(width="wide"), "synthetic.width: expected an integer"),
    (lambda d: d["bootstrap"].update(method="student"), "bootstrap.method must be bca or percentile"),
    (lambda d: d["real"].update(datasets=["/nonexistent/dataset"]), "is not a directory"),
    (lambda d: d["variants"][0].update(overrides={"model_geometry_bias": False}), "must be 'section.key'"),
    (lambda d: d.update(variants=[]), "variants: need a non-empty list"),
])
def test_cli_rejects_bad_config_with_clear_error(tmp_path, real_data_dir, capsys, mutate, message):
    import yaml

    d = tiny_study(real_data_dir)
    mutate(d)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    assert main(["--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "g2vlm-eval: error: invalid study config:" in err and message in err
    assert not (tmp_path / "out").exists()


def test_cli_missing_and_unparsable_config(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [unclosed")
    assert main(["--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_shipped_study_config_is_valid_and_module_entry_point_runs(tmp_path):
    study = load_study_config(REPO / "config" / "eval_study.yaml")
    assert study.reference_variant == "full" and study.variant("full").kind == "learned"
    kinds = {v.name: v.kind for v in study.variants}
    for name in ("no_geometry_grounding", "no_language_alignment", "geometry_free_2d", "recon_without_language",
                 "minimal_3d_supervision"):
        assert kinds[name] == "learned"
    assert [Path(p).name for p in study.real.datasets] == ["3dmatch_seq01_5", "icl_nuim_livingroom1_5"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: 3\n")
    r = subprocess.run([sys.executable, "-m", "g2vlm_core.eval", "--config", str(bad)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "invalid study config" in r.stderr
    with pytest.raises(StudyConfigError, match="variants"):
        study_from_dict({"variants": 3})
