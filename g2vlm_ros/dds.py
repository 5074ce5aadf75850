"""DDS settings for the project's one-machine runs (demo, smoke run, benchmarks): loopback only, shared memory.

Jazzy and Kilted (Fast DDS 3) read ROS_AUTOMATIC_DISCOVERY_RANGE and FASTDDS_DEFAULT_PROFILES_FILE; Humble (Fast DDS 2)
reads ROS_LOCALHOST_ONLY and FASTRTPS_DEFAULT_PROFILES_FILE instead."""
from __future__ import annotations

import os
from pathlib import Path

SHM_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"


def use_local_dds() -> None:
    """Keep discovery on this machine and carry images over large shared-memory segments (config/fastdds_shm.xml),
    unless the caller already chose; child processes inherit it. Call before rclpy.init."""
    # Each distro gets only the variables it reads: Jazzy warns in every process about ROS_LOCALHOST_ONLY, Fast DDS 3
    # about FASTRTPS_DEFAULT_PROFILES_FILE. ROS_DISTRO comes from a distro's setup.bash; the project venv is Kilted.
    distro = os.environ.get("ROS_DISTRO", "")
    if os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST") == "LOCALHOST" and distro == "humble":
        os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    if SHM_PROFILE.is_file() and not (os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
                                      or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        fast_dds_2 = distro in ("humble", "iron")
        name = "FASTRTPS_DEFAULT_PROFILES_FILE" if fast_dds_2 else "FASTDDS_DEFAULT_PROFILES_FILE"
        os.environ[name] = str(SHM_PROFILE)
