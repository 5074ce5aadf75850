"""Bad synthetic-data configurations are rejected with clear errors before any work starts."""
from __future__ import annotations

import pytest

from g2vlm_core.synth import SynthConfig, SynthConfigError, split_of_seed
from g2vlm_core.synth.cli import main


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), "resolution must be positive"),
    (dict(height=-5), "resolution must be positive"),
    (dict(num_scenes=-1), "num_scenes must be > 0"),
    (dict(frames_per_scene=0), "frames_per_scene must be > 0"),
    (dict(min_objects=10, max_objects=5), "max_objects (5) must be >= min_objects (10)"),
    (dict(min_objects=0), "min_objects must be >= 1"),
    (dict(max_objects=500), "impossible"),
    (dict(categories=("table", "spaceship")), "unknown categories ['spaceship']"),
    (dict(categories=("mug", "chair")), "sit on furniture"),
    (dict(noise="lidar"), "unknown noise 'lidar'"),
    (dict(bag="zip"), "unknown bag format"),
    (dict(depth_encoding="8UC1"), "unknown depth encoding"),
    (dict(split="holdout"), "unknown split"),
    (dict(hfov_deg=0.0), "hfov_deg"),
    (dict(width=3.5), "width must be an integer"),
])
def test_bad_config_rejected(kwargs, message):
    with pytest.raises(SynthConfigError) as err:
        SynthConfig(**kwargs)
    assert message in str(err.value)


def test_good_config_and_seed_splits():
    cfg = SynthConfig(num_scenes=3, split="val", seed=0, categories=("table", "mug"))
    assert cfg.scene_seeds() == [8, 18, 28]
    assert [split_of_seed(s) for s in range(10)] == ["train"] * 8 + ["val", "test"]


def test_cli_rejects_before_writing(tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        main(["--width", "0", "--out", str(out)])
    assert exc.value.code == 2
    assert "resolution must be positive" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["--categories", "table,unicorn", "--out", str(out)])
    assert "unknown categories ['unicorn']" in capsys.readouterr().err
    assert not out.exists()


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["--scenes", "1", "--frames", "2", "--width", "32", "--height", "24", "--noise", "realsense",
                 "--seed", "9", "--out", str(out)]) == 0
    assert "wrote 1 scenes / 2 frames" in capsys.readouterr().out
    from g2vlm_core.synth import SynthDataset

    ds = SynthDataset(out, "test")
    assert len(ds) == 1 and len(ds[0]) == 2 and ds[0].frame(1).rgb.shape == (24, 32, 3)
