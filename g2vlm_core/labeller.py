"""Keyframe labeller: the G2VLM model's instance proposals become labelled, embedded segments for the object map.

The pipeline calls a labeller on keyframes (``PerceptionPipeline(labeller=...)``); without one, objects come
from class-agnostic geometric segmentation only. The model's labels and language-aligned embeddings are what
let queries name categories ("the mug"), and its text encoder lets the query engine match unknown words.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .frame import RGBDFrame
from .segmentation import Segment, Segmenter

log = logging.getLogger(__name__)

# Where the shipped baseline checkpoint lives (inside the package, so installed copies find it too).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "g2vlm_baseline"


def resolve_checkpoint(spec: str) -> Path | None:
    """'none' -> None (geometry only); 'auto' -> the shipped checkpoint if this build has one, else None;
    '' or 'baseline' -> the shipped checkpoint; else a path. Raises FileNotFoundError for a missing one."""
    spec = spec.strip()
    if spec.lower() == "none" or (spec.lower() == "auto" and not SHIPPED_CHECKPOINT.exists()):
        return None
    path = SHIPPED_CHECKPOINT if spec in ("", "auto", "baseline") else Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint {path} does not exist" +
                                (" (no baseline checkpoint is shipped with this build; pass model_checkpoint:=none"
                                 " for geometry only, or train one: see the README)" if spec in ("", "baseline")
                                 else ""))
    return path


class ModelLabeller:
    """Calls the model on a keyframe and turns its instances into Segments (labels, scores, embeddings).

    Keeps the geometric segmentation's support planes (floor, table tops) so that "on the table" relations
    still have their supports when the model labels only the objects on them.
    """

    def __init__(self, inference, segmenter: Segmenter, min_score: float = 0.3, keep_planes: bool = True):
        self.inference, self.segmenter = inference, segmenter
        self.min_score, self.keep_planes = min_score, keep_planes
        self.calls = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, segmenter: Segmenter, device: str = "cpu", **kw) -> "ModelLabeller":
        from .model.inference import G2VLMInference  # torch is imported only when a model is used

        return cls(G2VLMInference.from_checkpoint(path, device), segmenter, **kw)

    def embed_text(self, text: str) -> np.ndarray:
        return self.inference.embed_text(text)

    def __call__(self, frame: RGBDFrame, T_world_cam: np.ndarray) -> list[Segment] | None:
        self.calls += 1
        try:
            res = self.inference.process_keyframe(frame.rgb, frame.depth_m, frame.intrinsics.K, T_world_cam)
        except ValueError as e:  # e.g. no valid depth for the model: fall back to geometry for this frame
            log.warning("model skipped a keyframe (%s); using geometric segmentation", e)
            return None
        keep = [k for k, inst in enumerate(res.instances, start=1) if inst.score >= self.min_score]
        ids = np.where(np.isin(res.instance_map, keep), res.instance_map, 0).astype(np.int32)
        labels = {k: res.instances[k - 1].label for k in keep}
        scores = {k: float(res.instances[k - 1].score) for k in keep}
        embeddings = {k: res.instances[k - 1].embedding for k in keep}
        segments = self.segmenter.segments_from_instances(frame, ids, labels, scores, embeddings, T_world_cam)
        if self.keep_planes:
            segments += [s for s in self.segmenter.segment_frame(frame, T_world_cam) if s.kind == "support"]
        return segments
