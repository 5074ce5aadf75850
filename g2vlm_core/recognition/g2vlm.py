"""The G2VLM backend: the shipped model's instances become labelled, embedded segments for the object map.

The pipeline calls a labeller on keyframes (``PerceptionPipeline(labeller=...)``); without one, objects come
from class-agnostic geometric segmentation only. The model's labels and language-aligned embeddings are what
let queries name categories ("the mug"), and its text encoder lets the query engine match unknown words.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..frame import RGBDFrame
from ..geometry.segmentation import Segment, Segmenter
from .base import Instance, Recognition, Recognizer, project_regions
from .labeller import KeyframeLabeller, LiftConfig

log = logging.getLogger(__name__)

# Where the shipped baseline checkpoint lives (inside the package, so installed copies find it too).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "g2vlm_baseline"


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


def _nearest_resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) image (pixel-centre convention): no value is invented."""
    rows = ((np.arange(hw[0]) + 0.5) * img.shape[0] / hw[0]).astype(int)
    cols = ((np.arange(hw[1]) + 0.5) * img.shape[1] / hw[1]).astype(int)
    return img[rows[:, None], cols[None, :]]


class G2VLMRecognizer(Recognizer):
    """The shipped G2VLM model as a recognizer: its instances (masks, labels of the synthetic vocabulary, language-
    aligned embeddings, whole-object box faces), and for the class-agnostic proposals it leaves (mostly)
    uncovered, its semantics' label and its object head's embedding of the region (objects the model's instance
    grouping missed or split still reach the map). Also the reasoner beside another recognizer
    (``embed_segments``) and the query engine's grounder (``ground``)."""

    name = "g2vlm"
    embedding_space = "g2vlm"

    def __init__(self, inference, input_width: int = 0, fill_max_covered: float = 0.5, min_score: float = 0.3):
        """``input_width``: keyframes wider than this are downscaled for the model (its instance masks are scaled
        back to the frame; the object points always come from the full-resolution depth); 0 = native size.
        ``fill_max_covered``: a proposal the model's instances cover less than this share of is labelled from the
        model's semantics (see Recognition.proposals); instances scoring below ``min_score`` are left out (and do
        not cover proposals)."""
        if input_width < 0:
            raise ValueError(f"input_width must be >= 0, got {input_width}")
        self.inference, self.input_width, self.fill_max_covered = inference, int(input_width), fill_max_covered
        self.min_score = min_score

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", input_width: int | None = None,
                        **kw) -> "G2VLMRecognizer":
        """``input_width`` None: the width the checkpoint was trained at (a network trained on small frames
        segments objects of the size it learned; it is faster too), native size if the checkpoint does not say."""
        from ..model.inference import G2VLMInference  # torch is imported only when a model is used

        inf = G2VLMInference.from_checkpoint(path, device)
        if input_width is None:
            input_width = inf.training_image_hw[1] if inf.training_image_hw else 0
        return cls(inf, input_width=input_width, **kw)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        names = self.inference.cfg.semantic_names
        return tuple(names[i] for i in self.inference.thing_ids if i < len(names))

    def describe(self) -> str:
        return f"g2vlm (input width {self.input_width or 'native'}, {self.inference.device})"

    def _model_input(self, frame: RGBDFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb, depth, K) at the model's input width: colour area-averaged, depth nearest (no invented depths)."""
        w = frame.depth_m.shape[1]
        if not self.input_width or w <= self.input_width:
            return frame.rgb, frame.depth_m, frame.intrinsics.K
        intr = frame.intrinsics.scaled(self.input_width / w)
        import torch
        import torch.nn.functional as F
        rgb = torch.from_numpy(np.array(frame.rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        rgb = F.interpolate(rgb, size=(intr.height, intr.width), mode="area")[0].permute(1, 2, 0)
        depth = _nearest_resize(frame.depth_m, (intr.height, intr.width))
        return rgb.round().clamp(0, 255).to(torch.uint8).numpy(), depth, intr.K

    def embed_text(self, text: str) -> np.ndarray:
        return self.inference.embed_text(text)

    def query_args(self) -> dict:
        """QueryEngine keyword arguments for this model: its MiniLM as the text embedder (label similarity, no
        second copy of the weights), its grounding head as the grounder, its object categories as the grounder's
        vocabulary."""
        from ..language.embedding import TextEmbedder

        return {"text_embedder": TextEmbedder.from_text_encoder(self.inference.model.text), "grounder": self.ground,
                "grounder_vocabulary": self.vocabulary}

    def ground(self, text: str, objects, viewpoint) -> np.ndarray | None:
        """The model's grounding-head scores (K,) of scene objects (their embeddings and boxes) for a referring
        expression seen from ``viewpoint`` (-inf for objects without an embedding); None when it cannot score
        them (no viewpoint, no embedding). The QueryEngine's ``grounder``."""
        have = [i for i, o in enumerate(objects) if o.embedding is not None]
        if viewpoint is None or not have:
            return None
        try:
            T = viewpoint.pose()
        except ValueError:  # looking straight up or down
            return None
        out = np.full(len(objects), -np.inf)
        try:
            out[have] = self.inference.ground(text, np.stack([objects[i].embedding for i in have]),
                                              [objects[i].box for i in have], T)
        except (ValueError, RuntimeError) as e:  # e.g. a loaded map's embeddings from another model
            log.warning("grounding head could not score the objects (%s); the query engine uses its rules", e)
            return None
        return out

    def recognize(self, frame: RGBDFrame, T_world_cam: np.ndarray, proposals=()) -> Recognition:
        rgb, depth, K = self._model_input(frame)
        regions = project_regions(proposals, depth.shape, K, T_world_cam) if len(proposals) else None
        res = (self.inference.process_keyframe(rgb, depth, K, T_world_cam, regions=regions) if regions is not None
               else self.inference.process_keyframe(rgb, depth, K, T_world_cam))
        keep = [k for k, inst in enumerate(res.instances, start=1) if inst.score >= self.min_score]
        kept = np.where(np.isin(res.instance_map, keep), res.instance_map, 0)
        ids = _nearest_resize(kept, frame.depth_m.shape) if kept.shape != frame.depth_m.shape else kept
        instances = []
        for k in keep:
            inst = res.instances[k - 1]
            m = ids == k
            if not m.any():
                continue
            vv, uu = np.nonzero(m)
            instances.append(Instance([uu.min(), vv.min(), uu.max() + 1, vv.max() + 1], inst.label,
                                      float(inst.score), mask=m, embedding=inst.embedding, box_faces=inst.box_faces))
        labels = [None] * len(proposals)
        if regions is not None:
            labels = self._fill(len(proposals), regions, kept, res)
        return Recognition(instances, labels)

    def _fill(self, n: int, regions: np.ndarray, kept: np.ndarray, res) -> list[Instance | None]:
        """Per proposal: None when the model's instances cover at least fill_max_covered of it; else an Instance
        labelled by the model's semantics over its pixels when one object class holds most of them (unnamed
        otherwise), embedded by the model's object head."""
        cfg = self.inference.cfg
        thing = np.zeros(max(len(cfg.semantic_names), 1), dtype=bool)
        thing[list(self.inference.thing_ids)] = True
        out: list[Instance | None] = []
        for j in range(1, n + 1):
            m = regions == j
            cnt = int(m.sum())
            if cnt == 0 or (kept[m] > 0).mean() >= self.fill_max_covered:
                out.append(None)
                continue
            counts = np.bincount(res.semantic_ids[m].ravel(), minlength=len(thing))[:len(thing)] * thing
            c = int(np.argmax(counts))
            share = counts[c] / cnt
            label = cfg.semantic_names[c] if share >= 0.5 else None
            out.append(Instance(np.zeros(4), label, float(share) if label else 0.0,
                                embedding=res.region_embeddings.get(j), box_faces=res.region_faces.get(j)))
        return out

    def embed_segments(self, frame: RGBDFrame, T_world_cam: np.ndarray, segments: list[Segment]) -> None:
        """Give segments lifted from another recognizer the model's object embedding and whole-object box."""
        rgb, depth, K = self._model_input(frame)
        regions = project_regions(segments, depth.shape, K, T_world_cam)
        res = self.inference.process_keyframe(rgb, depth, K, T_world_cam, regions=regions)
        from .labeller import _whole_box
        for j, s in enumerate(segments, start=1):
            if j in res.region_embeddings:
                s.embedding = res.region_embeddings[j]
                _whole_box(s, res.region_faces.get(j))


class ModelLabeller(KeyframeLabeller):
    """The pipeline's labeller for the G2VLM model alone (KeyframeLabeller over a G2VLMRecognizer).

    Keeps the geometric segmentation's support planes (floor, table tops) so that "on the table" relations
    still have their supports when the model labels only the objects on them.
    """

    def __init__(self, inference, segmenter: Segmenter, min_score: float = 0.3, keep_planes: bool = True,
                 input_width: int = 0, geometry_fill: bool = False, fill_max_covered: float = 0.5):
        """``geometry_fill``: geometric object segments that the model's instances cover less than
        ``fill_max_covered`` of are added too, labelled by the model's semantics and embedded by its object head
        (objects the model's instance grouping missed or split still reach the map)."""
        # Proposals the model leaves unnamed are not objects: on 20 validation scenes of the synthetic set 2 of 30
        # such confirmed objects were real ones (map objects per matched true object 2.14 -> 1.88, none lost).
        super().__init__(G2VLMRecognizer(inference, input_width, fill_max_covered, min_score), segmenter,
                         LiftConfig(min_score=min_score, keep_planes=keep_planes, label_proposals=geometry_fill,
                                    keep_unrecognized=False))

    @property
    def inference(self):
        return self.recognizer.inference

    @property
    def input_width(self) -> int:
        return self.recognizer.input_width

    @classmethod
    def from_checkpoint(cls, path: str | Path, segmenter: Segmenter, device: str = "cpu",
                        input_width: int | None = None, geometry_fill: bool = True, **kw) -> "ModelLabeller":
        """``geometry_fill`` on by default: on 20 validation scenes of the synthetic set it raised the share of true
        objects found in the map from 0.61 to 0.69 and in-map grounding Acc@0.25 from 0.50 to 0.55."""
        rec = G2VLMRecognizer.from_checkpoint(path, device, input_width)
        return cls(rec.inference, segmenter, input_width=rec.input_width, geometry_fill=geometry_fill, **kw)
