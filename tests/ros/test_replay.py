"""g2vlm-replay pacing over real DDS: --rate R keeps R times the recorded pace, --flow-control keeps one frame in
flight and pauses the schedule while the consumer is behind, --rate 0 goes as fast as the consumer takes."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from g2vlm_core.frame import RGBDFrame
from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_core.synth.bag import TOPICS, BagWriter
from g2vlm_ros.qos import RELIABLE
from g2vlm_ros.replay import BagPlayer

FRAMES, PERIOD_S = 12, 0.25  # a 2.75 s bag at 4 Hz
DEPTH_TOPIC = TOPICS["depth"][0]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "bag"
    intr = CameraIntrinsics(8, 6, 8.0, 8.0, 3.5, 2.5)
    with BagWriter(path, intrinsics=intr) as w:
        for i in range(FRAMES):
            w.write(RGBDFrame(np.zeros((6, 8, 3), np.uint8), np.ones((6, 8), np.float32), intr, np.eye(4),
                              stamp_s=PERIOD_S * i, index=i))
    return path


class Consumer:
    """Stands in for the perception node: reports each depth frame on `processed` after ``delay_s``."""

    def __init__(self, node, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received: list[tuple[float, float]] = []  # (stamp, arrival time)
        self.reported: list[tuple[float, float]] = []  # (stamp, report time)
        self.pub = node.create_publisher(Header, "processed", RELIABLE)
        node.create_subscription(Image, DEPTH_TOPIC, self._on_image, RELIABLE)

    def _on_image(self, msg: Image) -> None:
        self.received.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, time.monotonic()))
        threading.Timer(self.delay_s, self._report, (msg.header,)).start()

    def _report(self, header) -> None:
        self.reported.append((header.stamp.sec + header.stamp.nanosec * 1e-9, time.monotonic()))
        self.pub.publish(Header(stamp=header.stamp, frame_id="fused"))


def play(ros_node, bag, rate: float, delay_s: float, flow: bool = True):
    node, ex = ros_node
    consumer = Consumer(node, delay_s)
    player = BagPlayer(node, bag, rate=rate, flow_control=flow, executor=ex, progress=False,
                       topics=[DEPTH_TOPIC])
    publish = player.pubs[DEPTH_TOPIC].publish
    consumer.sent = []

    def timed(raw):  # when the player sends each frame, as its pacing decides
        consumer.sent.append(time.monotonic())
        publish(raw)

    player.pubs[DEPTH_TOPIC].publish = timed
    assert player.wait_for_subscribers(20.0)
    stats = player.play()
    player.close()
    end = time.monotonic() + 10.0
    while len(consumer.received) < FRAMES and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
    assert len(consumer.received) == FRAMES
    return stats, consumer


def test_rate_with_flow_control_keeps_the_recorded_pace_when_the_consumer_keeps_up(ros_node, bag):
    stats, c = play(ros_node, bag, rate=2.0, delay_s=0.01)
    sent = np.array(c.sent) - c.sent[0]
    # sent on the recorded schedule x2 (frame k at k x 0.125 s), never ahead of it; late only by scheduling noise
    # (the first frame may go out late, the schedule does not move for it)
    assert np.all(sent >= 0.125 * np.arange(FRAMES) - 0.1), sent
    assert 0.1 < np.median(np.diff(sent)) < 0.2, sent
    assert stats.wall_s >= (FRAMES - 1) * PERIOD_S / 2.0 - 0.01 and stats.flow_waits == 0
    assert stats.flow_timeouts == 0


def test_flow_control_waits_for_a_slow_consumer_and_pauses_the_schedule(ros_node, bag):
    stats, c = play(ros_node, bag, rate=4.0, delay_s=0.3)  # the consumer needs 0.3 s a frame; the pace is 0.0625 s
    reported = dict(c.reported)
    for (stamp, arrival), (prev_stamp, _) in zip(c.received[1:], c.received[:-1]):
        # at most one frame in flight: a frame arrives only after the previous one was reported
        assert prev_stamp in reported and reported[prev_stamp] <= arrival, (stamp, prev_stamp)
    assert stats.flow_waits >= FRAMES - 2 and stats.paused_s > 0.0
    assert stats.wall_s >= (FRAMES - 1) * 0.3
    assert stats.flow_timeouts == 0


def test_rate_zero_with_flow_control_goes_as_fast_as_the_consumer(ros_node, bag):
    stats, c = play(ros_node, bag, rate=0.0, delay_s=0.01)
    bag_s = (FRAMES - 1) * PERIOD_S
    # no pacing: far quicker than the 2.75 s of recorded time, yet still one frame in flight
    assert stats.wall_s < 0.5 * bag_s, stats.wall_s
    reported = dict(c.reported)
    for (_, arrival), (prev_stamp, _) in zip(c.received[1:], c.received[:-1]):
        assert reported[prev_stamp] <= arrival


def test_cli_keeps_the_rate_with_flow_control(monkeypatch, bag):
    """`g2vlm-replay BAG --rate R --flow-control` hands R to the player (it used to be forced to 0)."""
    from g2vlm_ros import replay

    seen = {}

    class Recorder(BagPlayer):
        def __init__(self, node, bag, rate=1.0, flow_control=False, *a, **kw):
            seen.update(rate=rate, flow_control=flow_control)
            raise ValueError("stop here")

    monkeypatch.setattr(replay, "BagPlayer", Recorder)
    assert replay.main([str(bag), "--rate", "2.5", "--flow-control"]) == 2  # the ValueError path
    assert seen == {"rate": 2.5, "flow_control": True}
