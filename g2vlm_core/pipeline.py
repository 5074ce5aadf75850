"""One frame in, a fused map and a scene graph out: pose -> TSDF fusion -> keyframe segmentation -> object map.

The perception node, bag replay and evaluation all drive this one class, so they behave the same. It never
raises on bad sensor data: a frame that cannot be used is skipped and its reason counted in ``skipped``.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .geometry.camera import GeometryError, check_rigid, rotation_angle_deg
from .geometry.fusion import FusionConfig, TSDFFusion
from .mapping import map_store
from .mapping.object_map import MapFormatError, ObjectMap, ObjectMapConfig
from .geometry.gravity import GravityCheck, zup_rotation
from .geometry.odometry import ModelTracker, ModelTrackerConfig
from .keyframes import Candidate, KeyframeScheduler, SurfaceCoverage
from .predicates import Viewpoint
from .scene_graph import SceneGraph
from .geometry.segmentation import Segment, Segmenter, SegmenterConfig
from .frame import RGBDFrame

log = logging.getLogger(__name__)

POSE_SOURCES = ("given", "odometry")
CLOCK_JUMP_ACTIONS = ("new_recording", "reset")
MAP_FILES = ("map.ply", "tsdf.npz", "objects.json", "scene_graph.json")


@dataclass(frozen=True)
class PipelineConfig:
    fusion: FusionConfig = field(default_factory=lambda: FusionConfig(voxel_size_m=0.02, depth_max_m=5.0,
                                                                      raise_on_invalid=False))
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    object_map: ObjectMapConfig = field(default_factory=ObjectMapConfig)
    pose_source: str = "given"  # "given": frames carry T_world_cam (TF / pose topic); "odometry": RGB-D odometry
    keyframe_every_n: int = 5  # a frame is a keyframe candidate at least every n fused frames ...
    keyframe_translation_m: float = 0.15  # ... or when the camera moved this far since the last candidate ...
    keyframe_rotation_deg: float = 15.0  # ... or turned this much
    async_keyframes: bool = False  # keyframe work (recognition, segmentation, object map) on its own thread so fusion
    # keeps the frame rate; candidates then wait in a pool and the thread takes the one that adds most (see
    # keyframes.KeyframeScheduler). Inline (False), every candidate is a keyframe, in order (deterministic).
    keyframe_min_novelty: float = 0.1  # async: a candidate is skipped ("recognised") when less than this share of
    # the surface it sees (TSDF blocks) has been seen by fewer than keyframe_confirm_views selected keyframes
    keyframe_confirm_views: int = 2  # surface counts as recognised once this many keyframes saw it (the object map
    # confirms an object on its second observation)
    keyframe_pool: int = 4  # async: candidates waiting while recognition is busy; on overflow the least novel goes
    keyframe_refresh_s: float = 5.0  # async: with nothing new in view, still one keyframe this often (stamp time)
    up_axis: str = "+z"  # the up axis of the frame the given poses are in; they are rotated into a z-up map
    # (geometry.gravity.zup_rotation) since the scene graph, boxes and predicates assume z-up
    map_frame: str = "map"  # frame of the fused map and the scene graph
    camera_frame: str = "camera"  # reference frame named by view-dependent relations
    clock_jump_s: float = 1.0  # a frame stamped this much before the last fused one means the source's clock jumped
    # back (a looping bag, a restarted driver); smaller steps back are skipped as "stamp_backwards" (late frames)
    on_clock_jump: str = "new_recording"  # "new_recording": forget the time state and keep mapping; "reset": also
    # clear the map

    def __post_init__(self) -> None:
        if self.pose_source not in POSE_SOURCES:
            raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {self.pose_source!r}")
        zup_rotation(self.up_axis)  # ValueError names the allowed axes
        if self.on_clock_jump not in CLOCK_JUMP_ACTIONS:
            raise ValueError(f"on_clock_jump must be one of {CLOCK_JUMP_ACTIONS}, got {self.on_clock_jump!r}")
        if not self.clock_jump_s > 0:
            raise ValueError(f"clock_jump_s must be positive, got {self.clock_jump_s}")
        if self.keyframe_every_n < 1:
            raise ValueError(f"keyframe_every_n must be >= 1, got {self.keyframe_every_n}")
        if not 0.0 <= self.keyframe_min_novelty <= 1.0 or self.keyframe_confirm_views < 1 or self.keyframe_pool < 1:
            raise ValueError("keyframe_min_novelty must be in [0, 1], keyframe_confirm_views and keyframe_pool >= 1")


@dataclass
class FrameReport:
    fused: bool
    keyframe: bool = False
    skipped_reason: str = ""
    skipped_detail: str = ""  # what was wrong, for the log
    clock_jump_s: float = 0.0  # > 0: the stamps jumped back this far before this frame (handled by on_clock_jump)
    T_world_cam: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


# A keyframe labeller (e.g. the G2VLM model): frame -> instance segments with labels and embeddings, or None
# to fall back to class-agnostic geometric segmentation.
Labeller = Callable[[RGBDFrame, np.ndarray], "list[Segment] | None"]


class PerceptionPipeline:
    """Thread-safe: ``process`` runs in one worker thread while ``snapshot`` / ``point_cloud`` / ``save`` may be
    called from others (queries, publishers, services). With ``async_keyframes`` keyframes are handled on a
    thread of the pipeline's own; ``on_keyframe(graph)`` is called with each new scene graph (on that thread),
    ``wait_idle()`` waits for queued keyframe work and ``close()`` stops the thread.

    Keyframe bookkeeping: ``keyframes_offered`` candidates, ``keyframes_selected`` handed to the labeller,
    ``keyframes`` done (``keyframes_labelled`` by the labeller, the rest by geometry; ``keyframes_failed`` raised),
    ``keyframes_skipped`` by reason; ``recognition_latency_ms``
    holds, per keyframe, the time from the frame's arrival to its objects in the scene graph (after
    ``on_keyframe`` returned)."""

    def __init__(self, config: PipelineConfig | None = None, labeller: Labeller | None = None,
                 on_keyframe: Callable[[SceneGraph], None] | None = None) -> None:
        self.config = config or PipelineConfig()
        c = self.config
        self.labeller = labeller
        self.on_keyframe = on_keyframe
        self.fusion = TSDFFusion(c.fusion)
        self.segmenter = Segmenter(c.segmenter)
        self.objects = ObjectMap(c.object_map)
        self.tracker = ModelTracker(self.fusion, ModelTrackerConfig(depth_min_m=c.fusion.depth_min_m,
                                                                    depth_max_m=c.fusion.depth_max_m)
                                    ) if c.pose_source == "odometry" else None
        self.skipped: collections.Counter[str] = collections.Counter()
        self.frames_fused = 0
        self.keyframes = 0
        self.keyframes_failed = 0  # keyframes whose recognizer raised (skipped; the frame itself was fused)
        self.keyframes_labelled = 0  # keyframes the labeller labelled (the others fell back to geometry)
        self.scheduler = KeyframeScheduler(c.keyframe_min_novelty, c.keyframe_confirm_views, c.keyframe_pool,
                                           c.keyframe_refresh_s)
        self.recognition_latency_ms: collections.deque[float] = collections.deque(maxlen=500)
        self.keyframe_ms: collections.deque[float] = collections.deque(maxlen=500)
        self.clock_jumps = 0  # clock jumps back handled (see PipelineConfig.on_clock_jump)
        self._lock = threading.RLock()  # frame state and fusion
        self._key_lock = threading.RLock()  # segmenter, labeller, object map
        self._key_cond = threading.Condition()
        self._key_busy = False
        self._key_thread: threading.Thread | None = None
        self._closing = False
        self._last_stamp: float | None = None
        self._last_key_pose: np.ndarray | None = None
        self._since_key = 0
        self.last_pose: np.ndarray | None = None
        self._graph = SceneGraph(frame_id=c.map_frame)
        self.T_zup_input = zup_rotation(c.up_axis)  # given poses -> the z-up map
        self.gravity = GravityCheck(to_input=self.T_zup_input[:3, :3].T)

    @property
    def keyframes_offered(self) -> int:
        return self.scheduler.offered

    @property
    def keyframes_selected(self) -> int:
        return self.scheduler.selected

    @property
    def keyframes_skipped(self) -> collections.Counter:
        return self.scheduler.skipped

    @property
    def keyframes_dropped(self) -> int:
        """Candidates not selected, whatever the reason (see ``keyframes_skipped``)."""
        return sum(self.scheduler.skipped.values())

    # --------------------------------------------------------------------------------------------- frames
    def _skip(self, reason: str, detail: str = "") -> FrameReport:
        self.skipped[reason] += 1
        log.debug("frame skipped (%s): %s", reason, detail)
        return FrameReport(False, skipped_reason=reason, skipped_detail=detail)

    def _is_keyframe(self, T: np.ndarray) -> bool:
        c = self.config
        if self._last_key_pose is None or self._since_key >= c.keyframe_every_n:
            return True
        rel = np.linalg.inv(self._last_key_pose) @ T
        return bool(np.linalg.norm(rel[:3, 3]) >= c.keyframe_translation_m
                    or rotation_angle_deg(rel) >= c.keyframe_rotation_deg)

    def process(self, frame: RGBDFrame, t_received: float | None = None) -> FrameReport:
        """Fuse one frame (and, on keyframe candidates, offer it for keyframe work). Never raises for bad data: see
        ``skipped``. ``t_received``: ``time.monotonic()`` when the frame arrived (default: now), the start of its
        recognition latency. ``timings_ms`` of the report: validate, track, fusion_prepare, fusion_open3d,
        keyframe (inline work or offering the candidate), total."""
        t0 = time.perf_counter()
        t_received = time.monotonic() if t_received is None else t_received
        timings: dict[str, float] = {}
        with self._lock:
            try:
                frame.validate()
            except GeometryError as e:
                return self._skip("malformed_frame", str(e))
            if not np.isfinite(frame.stamp_s):
                return self._skip("bad_stamp", f"stamp {frame.stamp_s}")
            jump = 0.0
            if self._last_stamp is not None and frame.stamp_s < self._last_stamp - self.config.clock_jump_s:
                jump = self._clock_jumped(frame.stamp_s)
            if self._last_stamp is not None and frame.stamp_s < self._last_stamp:
                return self._skip("stamp_backwards", f"stamped {frame.stamp_s:.3f}, "
                                  f"{self._last_stamp - frame.stamp_s:.3f} s before the last fused frame")
            if self.tracker is not None:
                t1 = time.perf_counter()
                tr = self.tracker.track(frame)
                timings["track"] = (time.perf_counter() - t1) * 1e3
                if not tr.success:
                    return self._skip("tracking_lost", tr.failure_reason)
                T = tr.T_world_cam
            else:
                if frame.T_world_cam is None:
                    return self._skip("missing_pose")
                try:
                    T = self.T_zup_input @ check_rigid(frame.T_world_cam, "T_world_cam")
                except GeometryError as e:
                    return self._skip("non_rigid_pose", str(e))
            timings["validate"] = (time.perf_counter() - t0) * 1e3 - timings.get("track", 0.0)
            fused = self.fusion.integrate(frame, T, checked=True)
            if not fused:
                return self._skip(self.fusion.last_skip_reason or "fusion_rejected", self.fusion.last_skip_detail)
            timings["fusion_prepare"] = self.fusion.last_timings_ms["prepare"]
            timings["fusion_open3d"] = self.fusion.last_timings_ms["open3d"]
            self._last_stamp = frame.stamp_s
            self.last_pose = T
            self.frames_fused += 1
            self._since_key += 1
            report = FrameReport(True, T_world_cam=T, timings_ms=timings, clock_jump_s=jump)
            if self._is_keyframe(T):
                t2 = time.perf_counter()
                self._last_key_pose, self._since_key = T, 0
                report.keyframe = True
                cand = Candidate(frame, T, self.fusion.last_block_keys(), t_received)
                if self.config.async_keyframes:
                    self._offer(cand)
                else:
                    with self._key_cond:
                        self.scheduler.offered += 1
                        self.scheduler.mark_selected(cand)
                    timings.update(self._keyframe(cand))
                timings["keyframe"] = (time.perf_counter() - t2) * 1e3
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return report

    def _clock_jumped(self, stamp_s: float) -> float:
        """The source's clock went back: a new recording (forget the time state) or, by config, a new map too."""
        jump = self._last_stamp - stamp_s
        self.clock_jumps += 1
        log.info("stamps jumped back %.3f s (to %.3f): %s", jump, stamp_s, self.config.on_clock_jump)
        if self.config.on_clock_jump == "reset":
            self.reset()
            if self.on_keyframe is not None:  # the cleared graph carries the deleted ids: subscribers need it
                self.on_keyframe(self._graph)
        else:
            self._forget_time()
        return jump

    def _forget_time(self) -> None:
        self._last_stamp = self._last_key_pose = None
        self._since_key = 0
        if self.tracker is not None:
            self.tracker.reset()  # it tracks from the previous frame, which belongs to the other recording

    # --------------------------------------------------------------------------------------------- keyframes
    def _keyframe(self, cand: Candidate) -> dict[str, float]:
        """Segments (from the labeller, else geometry) -> object map -> a new scene graph; returns timings (ms)."""
        frame, T = cand.frame, cand.T_world_cam
        with self._key_lock:
            t1 = time.perf_counter()
            try:
                segments = self.labeller(frame, T) if self.labeller is not None else None
            except Exception as e:  # a recognizer failing on one keyframe skips that keyframe, never the run
                self.keyframes_failed += 1
                log.warning("keyframe at t=%.3f skipped: the recognizer failed (%r); %d keyframes failed so far",
                            frame.stamp_s, e, self.keyframes_failed)
                return {"segmentation": (time.perf_counter() - t1) * 1e3}
            self.keyframes_labelled += segments is not None
            if segments is None:
                segments = self.segmenter.segment_frame(frame, T)
            t2 = time.perf_counter()
            self.objects.update(segments, frame.stamp_s, T, frame.intrinsics)
            self._graph = graph = self.objects.snapshot(self.viewpoint(), self.config.map_frame)
            self.keyframes += 1
            if not self.gravity.decided:
                self.gravity.observe(frame, T)
            t3 = time.perf_counter()
        if self.on_keyframe is not None:
            self.on_keyframe(graph)
        self.recognition_latency_ms.append((time.monotonic() - cand.t_received) * 1e3)
        self.keyframe_ms.append((time.perf_counter() - t1) * 1e3)
        return {"segmentation": (t2 - t1) * 1e3, "object_map": (t3 - t2) * 1e3}

    def _offer(self, cand: Candidate) -> None:
        with self._key_cond:
            self.scheduler.offer(cand)
            if self._key_thread is None:
                self._key_thread = threading.Thread(target=self._keyframe_loop, name="g2vlm_keyframes", daemon=True)
                self._key_thread.start()
            self._key_cond.notify_all()

    def _keyframe_loop(self) -> None:
        _lower_thread_priority(KEYFRAME_NICE)
        while True:
            with self._key_cond:
                cand = None
                while not self._closing:
                    cand = self.scheduler.select()
                    if cand is not None:
                        break
                    # select() may have dropped candidates that add nothing, which can make wait_idle's condition
                    # true: wake its waiters (close() is one) before sleeping until the next offer
                    self._key_cond.notify_all()
                    self._key_cond.wait()
                if cand is None:
                    return
                self._key_busy = True
            try:
                self._keyframe(cand)
            except Exception:  # one bad keyframe must not end keyframe processing for the run
                log.exception("keyframe failed")
                self.keyframes_failed += 1
                self.skipped["keyframe_error"] += 1
            finally:
                with self._key_cond:
                    self._key_busy = False
                    self._key_cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no keyframe candidate is pending or being processed; False on timeout."""
        with self._key_cond:
            return self._key_cond.wait_for(lambda: not self.scheduler.pending and not self._key_busy, timeout_s)

    def close(self) -> None:
        """Stop the keyframe thread (pending candidates are handled first, by the usual selection)."""
        self.wait_idle()
        with self._key_cond:
            self._closing = True
            self._key_cond.notify_all()
        if self._key_thread is not None:
            self._key_thread.join()

    # --------------------------------------------------------------------------------------------- outputs
    def viewpoint(self) -> Viewpoint | None:
        """The latest camera as the viewer of left/right/front/behind; None before the first fused frame or while
        the camera looks straight up or down (left/right are undefined then)."""
        if self.last_pose is None:
            return None
        vp = Viewpoint.from_pose(self.last_pose, self.config.camera_frame)
        try:
            vp.axes()
        except ValueError:
            return None
        return vp

    def snapshot(self) -> SceneGraph:
        """The scene graph as of the latest keyframe: a consistent object, never modified afterwards."""
        return self._graph

    def point_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """Fused coloured cloud: points (N, 3) float32 in the map frame, colours (N, 3) float32 in [0, 1]."""
        return self.fusion.extract_point_cloud()

    def reset(self) -> None:
        with self._key_cond:
            self.scheduler.clear()
            self.scheduler.coverage = SurfaceCoverage()
        with self._lock, self._key_lock:
            self.fusion.reset()
            self.objects.reset()
            self.segmenter.reset()
            self._forget_time()
            self.last_pose = None
            self.gravity = GravityCheck(to_input=self.T_zup_input[:3, :3].T)
            self._graph = self.objects.snapshot(None, self.config.map_frame)

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write map.ply (fused cloud), tsdf.npz, objects.json and scene_graph.json with a manifest, atomically
        (g2vlm_core.mapping.map_store: a crash leaves the previous folder or the new one whole); returns (ply, graph
        json). MapFolderError if ``directory`` holds something that is not a map."""
        d = Path(directory)
        with self._lock, self._key_lock:
            graph = self._graph
            map_store.write(d, {
                "map.ply": lambda p: self.fusion.save_ply(p, kind="cloud"),
                "tsdf.npz": self.fusion.save_map,
                "objects.json": lambda p: p.write_text(json.dumps(self.objects.to_dict())),
                "scene_graph.json": lambda p: p.write_text(json.dumps(graph.to_dict(), indent=1)),
            }, {"objects": len(graph.objects), "frames_fused": self.frames_fused, "saved_unix_s": time.time()})
        return d / "map.ply", d / "scene_graph.json"

    def load(self, directory: str | Path, max_file_bytes: int | None = None) -> SceneGraph:
        """Replace the map with one written by ``save``. Everything is read and checked first (manifest sizes and
        checksums, ``max_file_bytes``, the object map's fields, the voxel grid's arrays); only a map that passes
        replaces the current one, so on any error (ValueError or OSError naming it) the running map is untouched."""
        d = Path(directory)
        map_store.read(d, required=MAP_FILES, max_file_bytes=max_file_bytes)
        try:
            data = json.loads((d / "objects.json").read_text())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise MapFormatError(f"objects.json is not valid JSON ({e})") from None
        objects = ObjectMap.from_dict(data, self.config.object_map)
        grid = self.fusion.read_map(d / "tsdf.npz")
        with self._key_cond:
            self._key_pending = None  # a keyframe of the map being replaced
        with self._lock, self._key_lock:
            objects.succeed(self._graph)
            self.fusion.replace_grid(grid)
            self.objects = objects
            self._last_key_pose, self._since_key = None, 0
            self._graph = self.objects.snapshot(None, self.config.map_frame)
        return self._graph


KEYFRAME_NICE = 10  # the keyframe thread's niceness: see _lower_thread_priority


def limit_blas_threads(n: int) -> None:
    """Cap numpy's BLAS (OpenBLAS, MKL, BLIS) at ``n`` threads for the whole process, through threadpoolctl. Its
    pool starts one thread per core at import, at the importing thread's priority, and after each call its idle
    threads spin for a while: calls from the keyframe thread then took the CPU from fusion at full priority (on 2
    cores, Open3D's calls 22 ms a frame beside geometric keyframes against 12 with one BLAS thread). The matrices of
    a perception process are small, so one thread loses nothing."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def _lower_thread_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread's own nice value). The keyframe thread's
    recognition can take a core for most of a run; at equal priority it slows every frame's fusion, whose Open3D
    calls want both cores of a small machine. Fusion keeps the camera's pace and recognition takes what is left,
    which keyframe selection already budgets for. Threads the recognizer starts from here inherit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError) as e:  # not Linux, or not allowed: keep the default priority
        log.debug("keyframe thread priority unchanged: %s", e)
