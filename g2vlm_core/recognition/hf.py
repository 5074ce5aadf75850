"""The `hf` backend: open-vocabulary models through ``transformers``, from a local folder or the Hugging Face cache
(never downloaded at run time unless the user allows it).

- a zero-shot detector (``AutoModelForZeroShotObjectDetection``: OWLv2, OWL-ViT, Grounding DINO) finds boxes of
  the given object names;
- an image-text model (CLIP, SigLIP: ``get_image_features`` / ``get_text_features``) embeds each object's crop in
  the space of its text tower (the embeddings a map object keeps when no G2VLM model runs beside it; queries are
  then embedded by the same text tower) and names the class-agnostic proposals no detection covers.
Either alone works; both together is the usual set-up. CUDA with fp16 where available.

Recommended real models: on a desktop GPU `google/owlv2-base-patch16-ensemble` + `google/siglip-base-patch16-224`
(or `IDEA-Research/grounding-dino-tiny`); on a Jetson Orin `google/owlvit-base-patch32` +
`openai/clip-vit-base-patch32` in fp16. Fetch them once with `huggingface-cli download <id>` (or save_pretrained
into a folder) and pass the id or the folder.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np

from ..frame import RGBDFrame
from .base import Instance, Recognition, Recognizer, RecognizerError, require, uncovered_proposal_boxes

log = logging.getLogger(__name__)


def load_pretrained(spec: str, auto_cls, task: str, allow_download: bool = False):
    """(processor, model) of ``spec`` (a folder or a Hub id) for ``task``; RecognizerError naming the folder and
    what is missing (config, weights, processor files) or why the model cannot do the task."""
    from transformers import AutoConfig, AutoProcessor

    folder = Path(spec).expanduser()
    where = f"folder {folder}" if folder.is_dir() else (
        f"'{spec}' (not a folder; looked up as a Hugging Face id in the local cache" +
        ("" if allow_download else ", downloads off: set hf_allow_download to fetch it") + ")")
    src = str(folder) if folder.is_dir() else spec
    kw = {"local_files_only": not allow_download}
    try:
        cfg = AutoConfig.from_pretrained(src, **kw)
    except (OSError, ValueError) as e:
        raise RecognizerError(f"{task}: no model config (config.json) in {where}: {e}") from e
    try:
        model = auto_cls.from_pretrained(src, **kw)
    except ValueError as e:
        raise RecognizerError(f"{task}: {where} holds a '{cfg.model_type}' model, which cannot do {task} ({e})") from e
    except OSError as e:
        raise RecognizerError(f"{task}: no weights (model.safetensors or pytorch_model.bin) in {where}: {e}") from e
    try:
        processor = AutoProcessor.from_pretrained(src, **kw)
    except (OSError, ValueError, TypeError) as e:
        raise RecognizerError(f"{task}: no processor / tokenizer files (preprocessor_config.json, tokenizer) in "
                              f"{where}: {e}") from e
    return processor, model


class HFRecognizer(Recognizer):
    name = "hf"

    def __init__(self, detector: str = "", embedder: str = "", labels=(), device: str = "cpu",
                 allow_download: bool = False, min_score: float = 0.2, proposal_min_prob: float = 0.5,
                 covered_fraction: float = 0.5, prompt: str = "a photo of a {}"):
        """``labels``: object names to detect and to name proposals with (default: the COCO names). ``min_score``:
        detection threshold; ``proposal_min_prob``: a proposal is named when the embedder's zero-shot probability
        of one label reaches it."""
        require("hf", "transformers")
        require("hf", "torch")
        import torch
        from transformers import AutoModel, AutoModelForZeroShotObjectDetection

        if not detector and not embedder:
            raise RecognizerError("recognizer 'hf' needs hf_detector (a zero-shot detector: OWLv2, OWL-ViT, Grounding "
                                  "DINO) and/or hf_embedder (CLIP / SigLIP), as local folders or cached Hub ids")
        if not labels:
            from .coco import COCO_LABELS

            labels = tuple(COCO_LABELS.values())
        self.labels = tuple(str(x).strip().lower() for x in labels if str(x).strip())
        self.min_score, self.proposal_min_prob, self.covered_fraction = min_score, proposal_min_prob, covered_fraction
        self.prompt = prompt
        self._torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RecognizerError("recognizer 'hf' on cuda, but torch sees no CUDA device (a CPU-only torch build?)")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.detector_name, self.embedder_name = detector, embedder
        self.det_proc = self.det = self.emb_proc = self.emb = None
        if detector:
            self.det_proc, self.det = load_pretrained(detector, AutoModelForZeroShotObjectDetection,
                                                      "zero-shot object detection", allow_download)
            self.det = self.det.to(self.device, self.dtype).eval()
            self._grounding = "input_ids" in inspect.signature(
                self.det_proc.post_process_grounded_object_detection).parameters
        if embedder:
            self.emb_proc, self.emb = load_pretrained(embedder, AutoModel, "image-text embedding", allow_download)
            if not (hasattr(self.emb, "get_image_features") and hasattr(self.emb, "get_text_features")):
                raise RecognizerError(f"image-text embedding: {embedder} holds a '{self.emb.config.model_type}' model "
                                      "without get_image_features / get_text_features (use CLIP or SigLIP)")
            self.emb = self.emb.to(self.device, self.dtype).eval()
            self._label_feats = self._text_features([prompt.format(x) for x in self.labels])
        self.embedding_space = "clip" if embedder else ""

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.labels

    def describe(self) -> str:
        parts = [f"detector {self.detector_name}" if self.detector_name else "",
                 f"embedder {self.embedder_name}" if self.embedder_name else ""]
        return f"hf: {', '.join(p for p in parts if p)} on {self.device}, {len(self.labels)} labels"

    # ---- models
    def _text_features(self, texts: list[str]) -> np.ndarray:
        with self._torch.no_grad():
            tok = self.emb_proc(text=texts, return_tensors="pt", padding="max_length", truncation=True)
            tok = {k: v.to(self.device) for k, v in tok.items()}
            f = self.emb.get_text_features(**tok)
            f = getattr(f, "pooler_output", f)  # newer transformers return an output object
            f = f.float()
        return (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()

    def _image_features(self, crops: list[np.ndarray]) -> np.ndarray:
        with self._torch.no_grad():
            px = self.emb_proc(images=crops, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
            f = self.emb.get_image_features(pixel_values=px)
            f = getattr(f, "pooler_output", f).float()
        return (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()

    def embed_text(self, text: str) -> np.ndarray | None:
        if self.emb is None:
            return None
        return self._text_features([text])[0]

    def detect(self, rgb: np.ndarray) -> list[Instance]:
        """Zero-shot detections of ``self.labels`` in an RGB image (H, W, 3) uint8."""
        torch = self._torch
        H, W = rgb.shape[:2]
        text = ". ".join(self.labels) + "." if self._grounding else [list(self.labels)]
        with torch.no_grad():
            inputs = self.det_proc(text=text, images=rgb, return_tensors="pt")
            inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                      for k, v in inputs.items()}
            out = self.det(**inputs)
        kw = {"threshold": self.min_score, "target_sizes": [(H, W)]}
        if self._grounding:
            kw.update(input_ids=inputs["input_ids"], text_threshold=self.min_score)
        else:
            kw["text_labels"] = [list(self.labels)]
        res = self.det_proc.post_process_grounded_object_detection(out, **kw)[0]
        names = res.get("text_labels") or [self.labels[int(i)] for i in res["labels"]]
        dets = []
        for box, score, name in zip(res["boxes"].float().cpu().numpy(), res["scores"].float().cpu().numpy(), names):
            box = np.clip(box, 0, [W, H, W, H])
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 and str(name).strip():
                dets.append(Instance(box, str(name).strip().lower(), float(score)))
        return dets

    # ---- the interface
    def recognize(self, frame: RGBDFrame, T_world_cam: np.ndarray, proposals=()) -> Recognition:
        rgb = frame.rgb
        dets = self.detect(rgb) if self.det is not None else []
        found = uncovered_proposal_boxes(frame, T_world_cam, proposals, [d.box_xyxy for d in dets],
                                         self.covered_fraction) if len(proposals) else []
        named = [None if f is None else Instance(f[0], None, 0.0) for f in found]
        if self.emb is not None:
            todo = dets + [n for n in named if n is not None]
            if todo:
                feats = self._image_features([_crop(rgb, i.box_xyxy) for i in todo])
                for inst, f in zip(todo, feats):
                    inst.embedding = f
                for inst in [n for n in named if n is not None]:
                    logits = 100.0 * self._label_feats @ inst.embedding
                    p = np.exp(logits - logits.max())
                    p /= p.sum()
                    k = int(np.argmax(p))
                    if p[k] >= self.proposal_min_prob:
                        inst.label, inst.score = self.labels[k], float(p[k])
                        inst.label_scores = {self.labels[i]: float(p[i]) for i in np.argsort(-p)[:5] if p[i] >= 0.05}
        return Recognition(dets, named)


def _crop(rgb: np.ndarray, box: np.ndarray, margin: float = 0.1) -> np.ndarray:
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    x1, y1 = int(min(W, max(np.ceil(x1 + mx), x0 + 1))), int(min(H, max(np.ceil(y1 + my), y0 + 1)))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
