"""benchmarks/gpu_check.py in its small CPU mode runs every section and prints a figure for each, so the GPU run
(benchmarks/gpu_check.sh) cannot rot between the rare occasions a GPU is at hand."""
from __future__ import annotations

import re
import subprocess
import sys

from ..conftest import REPO as REPO_ROOT


def test_gpu_check_small_cpu_mode_prints_every_figure(ros_env):
    out = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--small"],
                         capture_output=True, text=True, timeout=600, env=ros_env, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    num = r"\d+\.\d+"
    for voxel in ("0.050", "0.020", "0.010"):  # ours and bare Open3D per voxel size
        assert re.search(rf"^\s+{voxel}\s+{num}\s+{num}\s*$", text, re.M), text
    assert re.search(rf"float32\s+{num} ms/keyframe", text), text
    assert re.search(rf"bfloat16\s+{num} ms/keyframe", text), text
    assert re.search(rf"g2vlm\s+{num} ms/keyframe", text), text  # the shipped model's recognizer at least
    m = re.search(rf"({num}) fused frames/s \((\d+) fused of (\d+) sent", text)
    assert m and float(m.group(1)) > 0 and m.group(2) == m.group(3), text
