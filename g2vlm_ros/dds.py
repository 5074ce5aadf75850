"""DDS settings for the project's one-machine runs (demo, smoke run, benchmarks): loopback only, shared memory."""
from __future__ import annotations

import os
from pathlib import Path

SHM_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"


def use_local_dds() -> None:
    """Keep discovery on this machine and carry images over large shared-memory segments (config/fastdds_shm.xml),
    unless the caller already chose; child processes inherit it. Call before rclpy.init."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if SHM_PROFILE.is_file() and not (os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
                                      or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(SHM_PROFILE)  # Fast DDS 3 (Jazzy, Kilted)
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(SHM_PROFILE)  # Fast DDS 2 (Humble)
