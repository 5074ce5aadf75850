"""Replay a rosbag2 (mcap or sqlite3, read with rosbags: no ROS distro needed) into ROS 2 topics.

    g2vlm-replay BAG                      # at recorded speed
    g2vlm-replay BAG --rate 4             # 4x
    g2vlm-replay BAG --rate 0             # as fast as possible
    g2vlm-replay BAG --flow-control       # at recorded speed, pausing while the perception node is behind
    g2vlm-replay BAG --rate 0 --flow-control   # as fast as the perception node consumes

With --flow-control at most one image frame is in flight: frame k goes out once the node has reported frame k-1
on its `processed` topic. A frame held back that way is published as soon as the node is done and the schedule
moves by the delay (a pause: frames never follow each other faster than the recorded pace times --rate).
    g2vlm-replay BAG --remap /camera/depth/image_raw:=/depth --topics /camera/color/image_raw /camera/depth/image_raw

Messages are published as the serialized CDR bytes stored in the bag, so any message type whose Python module
is importable can be replayed without conversion; topics of other types are skipped and reported.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tqdm import tqdm  # noqa: E402

from g2vlm_ros.conversions import stamp_to_sec  # noqa: E402
from g2vlm_ros.qos import RELIABLE  # noqa: E402


@dataclass
class ReplayStats:
    published: Counter = field(default_factory=Counter)
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> reason
    flow_timeouts: int = 0
    flow_waits: int = 0  # frames that went out late because the node was still busy with the previous one
    paused_s: float = 0.0  # total delay flow control added to the schedule
    wall_s: float = 0.0
    bag_s: float = 0.0


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class (ImportError/AttributeError if unavailable)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class BagPlayer:
    def __init__(self, node: Node, bag: Path, rate: float = 1.0, flow_control: bool = False,
                 flow_topic: str | None = None, topics: list[str] | None = None, remap: dict[str, str] | None = None,
                 flow_timeout_s: float = 30.0, progress: bool = True, executor=None):
        """``executor``: the one that spins ``node`` (a node belongs to one executor; default: a new one)."""
        from rosbags.rosbag2 import Reader

        if rate < 0:
            raise ValueError(f"rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.node, self.bag, self.rate = node, Path(bag), rate
        self.flow_control, self.flow_timeout_s, self.progress = flow_control, flow_timeout_s, progress
        self.remap = remap or {}
        if executor is None:
            executor = SingleThreadedExecutor(context=node.context)
            executor.add_node(node)
        self.executor = executor
        self.reader = Reader(self.bag)
        self.reader.open()
        self.stats = ReplayStats()
        self.pubs = {}
        for c in self.reader.connections:
            if topics and c.topic not in topics:
                continue
            try:
                cls = message_class(c.msgtype)
            except (ImportError, AttributeError, ValueError) as e:
                self.stats.skipped_topics[c.topic] = f"{c.msgtype} not importable ({e.__class__.__name__})"
                continue
            if c.topic not in self.pubs:
                self.pubs[c.topic] = node.create_publisher(cls, self.remap.get(c.topic, c.topic), RELIABLE)
        image_topics = [c.topic for c in self.reader.connections if c.msgtype == "sensor_msgs/msg/Image"
                        and c.topic in self.pubs]
        self.flow_topic = flow_topic or next((t for t in image_topics if "depth" in t), image_topics[-1]
                                             if image_topics else None)
        if flow_control and self.flow_topic is None:
            raise ValueError("flow control needs an image topic in the bag (or --flow-topic)")
        self._processed = -1.0
        if flow_control:
            node.create_subscription(Header, "processed", self._on_processed, RELIABLE)

    def _on_processed(self, msg: Header) -> None:
        self._processed = max(self._processed, stamp_to_sec(msg.stamp))

    def _spin_until(self, predicate, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    @staticmethod
    def _small_first(messages):
        """Messages of one timestamp reordered so poses, camera_info and tf go before the images they belong to.

        A node handles a frame as soon as its images arrive and then looks for the pose of that stamp; recorders
        write the small messages in any order, and behind megabytes of image data a lost reliable sample is only
        resent at the next heartbeat (seconds later)."""
        group: list = []
        for item in messages:
            if group and item[1] != group[0][1]:
                yield from sorted(group, key=lambda m: m[0].msgtype == "sensor_msgs/msg/Image")
                group = []
            group.append(item)
        yield from sorted(group, key=lambda m: m[0].msgtype == "sensor_msgs/msg/Image")

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        pubs = [p for t, p in self.pubs.items() if "image" in t] or list(self.pubs.values())
        return self._spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout_s)

    def play(self) -> ReplayStats:
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.ROS2_HUMBLE)
        conns = [c for c in self.reader.connections if c.topic in self.pubs]
        total = sum(c.msgcount for c in conns)
        t_wall0 = time.monotonic()
        t_bag0 = None
        last_flow_stamp = None
        bar = tqdm(total=total, desc=f"replay {self.bag.name}", unit="msg", disable=not self.progress)
        for conn, t_ns, raw in self._small_first(self.reader.messages(connections=conns)):
            t_bag0 = t_ns if t_bag0 is None else t_bag0
            due = t_wall0 + self.stats.paused_s + (t_ns - t_bag0) * 1e-9 / self.rate if self.rate > 0 else None
            if due is not None:
                while time.monotonic() < due:
                    self.executor.spin_once(timeout_sec=min(0.01, max(0.0, due - time.monotonic())))
            if self.flow_control and conn.topic == self.flow_topic:
                # at most one frame in flight: before sending frame k, wait until the node handled frame k-1
                if last_flow_stamp is not None and not (self._processed >= last_flow_stamp - 1e-6):
                    self.stats.flow_waits += 1
                    if not self._spin_until(lambda: self._processed >= last_flow_stamp - 1e-6, self.flow_timeout_s):
                        self.stats.flow_timeouts += 1
                    if due is not None:  # the node was behind: pause the schedule by the delay
                        self.stats.paused_s += max(0.0, time.monotonic() - due)
                h = ts.deserialize_cdr(raw, conn.msgtype).header.stamp
                last_flow_stamp = h.sec + h.nanosec * 1e-9
            self.pubs[conn.topic].publish(bytes(raw))
            self.stats.published[conn.topic] += 1
            bar.update(1)
            self.stats.bag_s = (t_ns - t_bag0) * 1e-9
        if self.flow_control and last_flow_stamp is not None:
            if not self._spin_until(lambda: self._processed >= last_flow_stamp - 1e-6, self.flow_timeout_s):
                self.stats.flow_timeouts += 1
        bar.close()
        self.stats.wall_s = time.monotonic() - t_wall0
        return self.stats

    def close(self) -> None:
        self.reader.close()


def parse_remap(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        src, sep, dst = it.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"remap {it!r} must look like /from:=/to")
        out[src] = dst
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3)")
    ap.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    ap.add_argument("--flow-control", action="store_true", help="one frame in flight: wait for the perception node's "
                    "`processed` report of a frame before sending the next (combines with --rate)")
    ap.add_argument("--flow-topic", help="image topic paced by flow control (default: the depth image topic)")
    ap.add_argument("--topics", nargs="*", help="only these topics")
    ap.add_argument("--remap", nargs="*", default=[], help="/from:=/to")
    ap.add_argument("--wait-subscribers", type=float, default=10.0, help="seconds to wait for subscribers")
    a = ap.parse_args(argv)
    if not (a.bag / "metadata.yaml").is_file():
        print(f"error: {a.bag} is not a rosbag2 folder (no metadata.yaml)", file=sys.stderr)
        return 2
    rclpy.init()
    node = rclpy.create_node("g2vlm_replay")
    try:
        player = BagPlayer(node, a.bag, a.rate, a.flow_control, a.flow_topic, a.topics, parse_remap(a.remap))
        for topic, why in player.stats.skipped_topics.items():
            print(f"skipping {topic}: {why}", file=sys.stderr)
        if not player.wait_for_subscribers(a.wait_subscribers):
            print("warning: no subscriber on the image topics yet; playing anyway", file=sys.stderr)
        s = player.play()
        player.close()
        n = sum(s.published.values())
        print(f"published {n} messages ({', '.join(f'{t}: {c}' for t, c in sorted(s.published.items()))}) "
              f"in {s.wall_s:.1f} s for {s.bag_s:.1f} s of bag"
              + (f"; waited for the node before {s.flow_waits} frames ({s.paused_s:.1f} s)" if s.flow_waits else "")
              + (f"; {s.flow_timeouts} flow-control timeouts" if s.flow_timeouts else ""))
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
