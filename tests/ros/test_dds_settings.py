"""g2vlm_ros/dds.py: each distro gets the loopback and Fast DDS profile variables it reads, and a caller's choice wins."""
from __future__ import annotations

import os

import pytest

from g2vlm_ros.dds import SHM_PROFILE, use_local_dds

VARS = ("ROS_DISTRO", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE")


@pytest.fixture
def clean_env(monkeypatch):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


@pytest.mark.parametrize("distro", ["", "jazzy", "kilted"])
def test_jazzy_and_later_get_only_their_own_variables(clean_env, distro):
    if distro:
        clean_env.setenv("ROS_DISTRO", distro)
    use_local_dds()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(SHM_PROFILE)
    assert "ROS_LOCALHOST_ONLY" not in os.environ and "FASTRTPS_DEFAULT_PROFILES_FILE" not in os.environ


def test_humble_gets_localhost_only_and_the_fast_dds_2_profile_variable(clean_env):
    clean_env.setenv("ROS_DISTRO", "humble")
    use_local_dds()
    assert os.environ["ROS_LOCALHOST_ONLY"] == "1"
    assert os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(SHM_PROFILE)
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ


def test_a_callers_choice_is_kept(clean_env):
    clean_env.setenv("ROS_DISTRO", "humble")
    clean_env.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    clean_env.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/etc/my_profile.xml")
    use_local_dds()
    assert "ROS_LOCALHOST_ONLY" not in os.environ  # network discovery was asked for
    assert os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] == "/etc/my_profile.xml"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ
