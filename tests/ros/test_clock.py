"""Time faults against the perception node over real DDS (issue 18, item 3): a frame stamped a year ahead, reset
clearing the time state, a source clock that jumps back (a new recording, or a new map by parameter)."""
from __future__ import annotations

import re
import time

import pytest

from .conftest import spin_until
from .node_rig import Rig, start_node


@pytest.mark.parametrize("on_jump", ["new_recording", "reset"])
def test_a_frame_a_year_ahead_and_a_clock_jump_back(ros_env, ros_node, tmp_path, on_jump):
    proc = start_node(ros_env, tmp_path / "maps", f"on_clock_jump:={on_jump}")
    try:
        rig = Rig(*ros_node, proc)
        rig.wait_up()
        assert [rig.send() for _ in range(2)] == ["keyframe"] * 2
        year_ahead = time.time() + 365 * 86400.0  # the node's clock is the system clock
        assert rig.send(stamp=year_ahead) == "stamp_future"
        assert [rig.send() for _ in range(2)] == ["keyframe"] * 2  # normal frames fuse
        assert rig.diag()["rejected_stamp_future"] == "1"

        # reset clears every piece of time state, the synchroniser's too: older stamps fuse afterwards
        last = rig.cam.t
        rig.reset()
        assert rig.send(stamp=last - 0.5) == "keyframe"
        assert rig.send() == "keyframe"  # objects no recognizer named are published from their second view

        assert spin_until(rig.ex, lambda: rig.graphs and rig.graphs[-1].objects, 10.0)
        ids = {o.id for o in rig.graphs[-1].objects}
        n = len(rig.graphs)
        rig.cam.t = 20.0  # the driver restarted: its clock is 80 s behind
        assert [rig.send() for _ in range(3)] == ["keyframe"] * 3  # mapping goes on
        kv = rig.diag()
        assert kv["clock_jumps_back"] == "1" and "rejected_stamp_backwards" not in kv, kv
        spin_until(rig.ex, lambda: False, 0.5)  # the graphs of the last keyframes
        deleted = set().union(*(set(g.deleted_ids) for g in rig.graphs[n:]))
        if on_jump == "reset":
            assert ids <= deleted  # the map was cleared
        else:
            assert not deleted & ids and ids <= {o.id for o in rig.graphs[-1].objects}  # the map was kept
    finally:
        rc, out = proc.stop()
    assert rc == 0, out
    assert len(re.findall("clock jumped back", out)) == 1, out  # logged once


