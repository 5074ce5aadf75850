"""rosbag2 writer (mcap or sqlite3 through rosbags, no ROS install needed) for synthetic RGB-D sequences."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry.camera import CameraIntrinsics
from ..frame import RGBDFrame

MAP_FRAME = "map"
CAMERA_FRAME = "camera_color_optical_frame"
TOPICS = {
    "color": ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
    "depth": ("/camera/depth/image_raw", "sensor_msgs/msg/Image"),
    "color_info": ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
    "depth_info": ("/camera/depth/camera_info", "sensor_msgs/msg/CameraInfo"),
    "pose": ("/ground_truth/pose", "geometry_msgs/msg/PoseStamped"),
    "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
}
STAMP_OFFSET_S = 1.0  # bag stamps = stamp_s + 1 s, so no message carries a zero (unset-looking) stamp


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Humble typestore (built once: building it takes ~0.5 s)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


class BagWriter:
    """Writes RGBDFrames as a rosbag2 that ``ros2 bag play`` can replay; use as a context manager."""

    def __init__(self, path: str | Path, storage: str = "mcap", depth_encoding: str = "16UC1",
                 intrinsics: CameraIntrinsics | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        if depth_encoding not in ("16UC1", "32FC1"):
            raise ValueError(f"depth encoding must be 16UC1 or 32FC1, got {depth_encoding!r}")
        self.ts = typestore()
        self.depth_encoding = depth_encoding
        self.intrinsics = intrinsics
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(Path(path), version=8, storage_plugin=plugin)
        self.writer.open()
        self.conn = {}
        for key, (topic, msgtype) in TOPICS.items():
            if msgtype in self.ts.types:  # every supported store has TFMessage, but stay safe
                self.conn[key] = self.writer.add_connection(topic, msgtype, typestore=self.ts)
        self.count = 0

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _header(self, stamp_ns: int, frame_id: str):
        T = self.ts.types
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                                              nanosec=stamp_ns % 1_000_000_000),
                                        frame_id=frame_id)

    def _image(self, header, arr: np.ndarray, encoding: str):
        arr = np.ascontiguousarray(arr)
        h, w = arr.shape[:2]
        return self.ts.types["sensor_msgs/msg/Image"](
            header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
            step=w * (arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)),
            data=arr.view(np.uint8).reshape(-1))

    def _camera_info(self, header, intr: CameraIntrinsics):
        T = self.ts.types
        K = intr.K
        P = np.zeros((3, 4))
        P[:, :3] = K
        d = np.array(intr.distortion if intr.distortion else (0.0,) * 5, dtype=np.float64)
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return T["sensor_msgs/msg/CameraInfo"](header=header, height=intr.height, width=intr.width,
                                               distortion_model=intr.distortion_model or "plumb_bob", d=d,
                                               k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
                                               binning_x=0, binning_y=0, roi=roi)

    def write(self, frame: RGBDFrame) -> None:
        """Write one frame's colour, depth, camera infos, GT pose and tf at the frame's stamp (+1 s)."""
        T = self.ts.types
        ser = self.ts.serialize_cdr
        stamp_ns = int(round((frame.stamp_s + STAMP_OFFSET_S) * 1e9))
        intr = frame.intrinsics if self.intrinsics is None else self.intrinsics
        cam_h = self._header(stamp_ns, CAMERA_FRAME)
        if self.depth_encoding == "16UC1":
            d = np.nan_to_num(frame.depth_m.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            depth = np.clip(np.rint(d * 1000.0), 0, 65535).astype("<u2")
        else:
            depth = frame.depth_m.astype("<f4")
        w = self.writer
        w.write(self.conn["color"], stamp_ns, ser(self._image(cam_h, frame.rgb, "rgb8"), "sensor_msgs/msg/Image"))
        w.write(self.conn["depth"], stamp_ns, ser(self._image(cam_h, depth, self.depth_encoding),
                                                  "sensor_msgs/msg/Image"))
        info = ser(self._camera_info(cam_h, intr), "sensor_msgs/msg/CameraInfo")
        w.write(self.conn["color_info"], stamp_ns, info)
        w.write(self.conn["depth_info"], stamp_ns, info)
        if frame.T_world_cam is not None:
            Tw = np.asarray(frame.T_world_cam, dtype=np.float64)
            qx, qy, qz, qw = Rotation.from_matrix(Tw[:3, :3]).as_quat()
            quat = T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)
            map_h = self._header(stamp_ns, MAP_FRAME)
            point = T["geometry_msgs/msg/Point"](x=Tw[0, 3], y=Tw[1, 3], z=Tw[2, 3])
            pose = T["geometry_msgs/msg/Pose"](position=point, orientation=quat)
            w.write(self.conn["pose"], stamp_ns, ser(T["geometry_msgs/msg/PoseStamped"](header=map_h, pose=pose),
                                                     "geometry_msgs/msg/PoseStamped"))
            if "tf" in self.conn:
                tf = T["geometry_msgs/msg/TransformStamped"](
                    header=map_h, child_frame_id=CAMERA_FRAME,
                    transform=T["geometry_msgs/msg/Transform"](
                        translation=T["geometry_msgs/msg/Vector3"](x=Tw[0, 3], y=Tw[1, 3], z=Tw[2, 3]), rotation=quat))
                w.write(self.conn["tf"], stamp_ns, ser(T["tf2_msgs/msg/TFMessage"](transforms=[tf]),
                                                       "tf2_msgs/msg/TFMessage"))
        self.count += 1
