"""The one recognizer interface: a posed keyframe in, 2D instances (box, optional mask, label distribution,
confidence, optional embedding) out. Every backend (coco, hf, g2vlm) implements it; recognition.labeller lifts
its instances to 3D segments for the one object map."""
from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field

import numpy as np

from ..frame import RGBDFrame
from ..geometry.camera import invert_transform, transform_points

# Extras of setup.py that bring each backend's optional packages (named in errors so a user knows what to install).
EXTRAS = {"coco": "coco", "hf": "hf"}


class RecognizerError(RuntimeError):
    """A recognizer cannot be built (missing package, model folder without weights, wrong model kind)."""


class MissingExtraError(RecognizerError, ImportError):
    """An optional package a backend needs is not installed: the message names the pip extra to install."""

    def __init__(self, backend: str, package: str, extra: str):
        super().__init__(f"the '{backend}' recognizer needs the Python package '{package}', which is not installed: "
                         f"pip install 'g2vlm[{extra}]' (or rerun `make setup`, which installs every extra)")
        self.backend, self.package, self.extra = backend, package, extra


def require(backend: str, module: str, package: str | None = None) -> None:
    """Raise MissingExtraError unless ``module`` is importable (without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(backend, package or module, EXTRAS.get(backend, backend))


@dataclass
class Instance:
    """One recognised instance of a keyframe, in the pixel coordinates of the frame given to ``recognize``.

    box_xyxy:     (4,) float [x0, y0, x1, y1] pixels (x1, y1 exclusive).
    label:        best label in the backend's vocabulary, None when the backend names nothing.
    score:        confidence in [0, 1] that the instance is a real object (of ``label`` when it has one).
    label_scores: {label: probability} over the backend's vocabulary (its best entries; they sum to <= 1).
    mask:         (H, W) bool pixels of the instance when the backend segments, else None (the box is lifted
                  with depth, see recognition.labeller).
    embedding:    (D,) unit appearance embedding in the backend's space (``Recognizer.embedding_space``), or None.
    box_faces:    (6,) a whole-object box head's face offsets for the box of the instance's visible points
                  (g2vlm's amodal head), or None.
    """

    box_xyxy: np.ndarray
    label: str | None
    score: float
    label_scores: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None
    embedding: np.ndarray | None = None
    box_faces: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.box_xyxy = np.asarray(self.box_xyxy, dtype=np.float64).reshape(4)
        self.score = float(self.score)
        if self.label is not None and not self.label_scores:
            self.label_scores = {self.label: self.score}


@dataclass
class Recognition:
    """What a recognizer returns for one keyframe.

    instances: the backend's own detections.
    proposals: for the class-agnostic proposals the caller passed (geometric segments), aligned with them: an
               Instance (label / embedding / box faces for that region) when the backend recognises the region as
               an object its detections missed, else None. The lifted proposal keeps its own points.
    """

    instances: list[Instance] = field(default_factory=list)
    proposals: list[Instance | None] = field(default_factory=list)


class Recognizer(abc.ABC):
    """A keyframe recognizer. ``recognize`` may be slow (tens to hundreds of ms); it runs on keyframes only."""

    name: str = ""
    # Space of the instances' embeddings: "g2vlm" (the model's language-aligned object head), "clip" (a CLIP /
    # SigLIP image tower; ``embed_text`` gives query embeddings in the same space) or "" (no embeddings).
    embedding_space: str = ""

    @property
    @abc.abstractmethod
    def vocabulary(self) -> tuple[str, ...]:
        """Every label the backend can give (lower case)."""

    @abc.abstractmethod
    def recognize(self, frame: RGBDFrame, T_world_cam: np.ndarray, proposals=()) -> Recognition:
        """Instances of one posed keyframe. ``proposals``: class-agnostic 3D segments (geometry.segmentation
        Segments, world frame) the backend may label (see Recognition.proposals); backends that cannot label
        regions return ``[None] * len(proposals)``."""

    def embed_text(self, text: str) -> np.ndarray | None:
        """Unit embedding of ``text`` in ``embedding_space`` (None when the backend has no text tower)."""
        return None

    def describe(self) -> str:
        """One line for logs: backend, model, device."""
        return self.name


def project_regions(segments, hw: tuple[int, int], K: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """(H, W) int32 map at image size ``hw``: id j >= 1 where segment j - 1's world points project, closed by one
    pixel (segments' points are voxel-thinned). Later segments overwrite earlier ones where they overlap."""
    from scipy import ndimage

    reg = np.zeros(hw, dtype=np.int32)
    T_cam_world = invert_transform(T_world_cam)
    for j, seg in enumerate(segments, start=1):
        p = transform_points(T_cam_world, np.asarray(seg.points_world, dtype=np.float64))
        p = p[p[:, 2] > 1e-3]
        u = np.round(K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]).astype(int)
        v = np.round(K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]).astype(int)
        ok = (u >= 0) & (u < hw[1]) & (v >= 0) & (v < hw[0])
        reg[v[ok], u[ok]] = j
    return np.where(reg > 0, reg, ndimage.maximum_filter(reg, size=3))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of 2D boxes a (N, 4) and b (M, 4), [x0, y0, x1, y1]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def uncovered_proposal_boxes(frame: RGBDFrame, T_world_cam: np.ndarray, proposals, boxes: np.ndarray,
                             covered_fraction: float) -> list[tuple[np.ndarray, int] | None]:
    """Per proposal (world-frame Segment): None when at least ``covered_fraction`` of its projected points fall
    inside the detection ``boxes`` (N, 4) (or none lands in the image), else (its 2D box [x0, y0, x1, y1], the
    number of its points in the image)."""
    K, H, W = frame.intrinsics.K, frame.depth_m.shape[0], frame.depth_m.shape[1]
    T_cam_world = invert_transform(T_world_cam)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out: list[tuple[np.ndarray, int] | None] = []
    for seg in proposals:
        p = transform_points(T_cam_world, np.asarray(seg.points_world, dtype=np.float64))
        p = p[p[:, 2] > 1e-3]
        u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
        v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        u, v = u[ok], v[ok]
        if len(u) == 0:
            out.append(None)
            continue
        inside = np.zeros(len(u), dtype=bool)
        for b in boxes:
            inside |= (u >= b[0]) & (u < b[2]) & (v >= b[1]) & (v < b[3])
        out.append(None if inside.mean() >= covered_fraction else
                   (np.array([u.min(), v.min(), u.max() + 1, v.max() + 1]), int(len(u))))
    return out
