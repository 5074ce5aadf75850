"""Build the keyframe labeller for a recognizer name: the one place the node, the evaluation and the benchmarks
choose backends and their lifting settings.

How the G2VLM model and a real-image recognizer combine: with ``recognizer: g2vlm`` the model is the recognizer
(the synthetic world's vocabulary). With ``coco`` or ``hf`` the recognizer names the objects and, unless
``model_checkpoint`` is "none", the model runs beside it as the reasoner: its object head embeds every lifted
object in the model's language-aligned space and completes its whole-object box, so the model's grounding head
ranks objects from any backend. The model's own labels are not used then (they come from synthetic scenes).
"""
from __future__ import annotations

import logging
from dataclasses import replace

from ..geometry.segmentation import Segmenter
from .labeller import KeyframeLabeller, LiftConfig

log = logging.getLogger(__name__)

BACKENDS = ("coco", "hf", "g2vlm", "none")
DEFAULT_REAL_BACKEND = "coco"  # the default for real cameras: pretrained on real images, runs offline

# Lifting for recognizers of real images: only what they name becomes an object (unnamed clusters of a real room
# are mostly parts of counters, walls and furniture); long unclaimed supports against a wall are counters
# (structure), other ones at table height tables.
REAL_LIFT = LiftConfig(keep_unrecognized=False, counter_min_extent_m=1.0, tables_from_supports=True)


def make_recognizer(name: str, device: str = "cpu", **kw):
    """A Recognizer by backend name (``kw``: the backend's options). Raises ValueError for an unknown name and
    the backend's MissingExtraError / RecognizerError when it cannot be built."""
    if name == "coco":
        from .coco import CocoConfig, CocoRecognizer

        return CocoRecognizer(CocoConfig(**kw))
    if name == "hf":
        from .hf import HFRecognizer

        return HFRecognizer(device=device, **kw)
    if name == "g2vlm":
        from .g2vlm import G2VLMRecognizer, resolve_checkpoint

        path = resolve_checkpoint(kw.pop("model_checkpoint", "auto"))
        if path is None:
            raise ValueError("recognizer 'g2vlm' needs a model checkpoint (model_checkpoint is 'none')")
        return G2VLMRecognizer.from_checkpoint(path, device, **kw)
    raise ValueError(f"unknown recognizer {name!r}; one of {', '.join(BACKENDS)}")


def make_labeller(name: str, segmenter: Segmenter, device: str = "cpu", model_checkpoint: str = "auto",
                  lift: LiftConfig | None = None, **backend_kw) -> KeyframeLabeller | None:
    """The pipeline's labeller for recognizer ``name`` ("none": None, geometry only) and the G2VLM model of
    ``model_checkpoint`` ("auto" / "baseline" / "none" / a folder; see the module docstring)."""
    from .g2vlm import G2VLMRecognizer, ModelLabeller, resolve_checkpoint

    if name not in BACKENDS:
        raise ValueError(f"unknown recognizer {name!r}; one of {', '.join(BACKENDS)}")
    if name == "none":
        return None
    path = resolve_checkpoint(model_checkpoint)
    if name == "g2vlm":
        if path is None:
            raise ValueError("recognizer 'g2vlm' needs a model checkpoint (model_checkpoint is 'none')")
        labeller = ModelLabeller.from_checkpoint(path, segmenter, device)
        if lift is not None:
            labeller.config = replace(lift, label_proposals=labeller.config.label_proposals)
        return labeller
    recognizer = make_recognizer(name, device, **backend_kw)
    reasoner = G2VLMRecognizer.from_checkpoint(path, device) if path is not None else None
    return KeyframeLabeller(recognizer, segmenter, lift or REAL_LIFT, reasoner=reasoner)
