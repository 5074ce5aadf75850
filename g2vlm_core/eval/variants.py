"""Study variants: how each row gets a pipeline (geometry-only, GT oracle, or a trained G2VLM variant)."""
from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..recognition.g2vlm import ModelLabeller
from ..pipeline import PerceptionPipeline, PipelineConfig
from ..language.query import QueryEngine
from ..geometry.segmentation import Segmenter
from .config import StudyConfig, VariantSpec

log = logging.getLogger(__name__)

TRAIN_MISSING = "model training not available yet: g2vlm_core.model.train missing"


class ModelUnavailableError(RuntimeError):
    """A learned variant cannot run yet; the message says what is missing (shown as "not run: <message>")."""


@dataclass
class VariantRunner:
    """How one (variant, seed) is evaluated: a fresh pipeline per scene and the query engine of its answers.
    ``make_pipeline`` is None for the oracle, which answers from the GT graph."""

    variant: str
    seed: int | None
    kind: str
    make_pipeline: Callable[[], PerceptionPipeline] | None
    engine: QueryEngine
    checkpoint: str = ""


def geometry_runner(spec: VariantSpec, study: StudyConfig) -> VariantRunner:
    """The model-free pipeline (planes + clustering, class-agnostic objects) with the study's fusion voxel."""
    rc = study.reconstruction
    base = PipelineConfig()
    cfg = dataclasses.replace(base, fusion=dataclasses.replace(base.fusion, voxel_size_m=rc.voxel_size_m,
                                                               depth_max_m=rc.depth_max_m))
    return VariantRunner(spec.name, None, spec.kind, lambda: PerceptionPipeline(cfg), QueryEngine())


def oracle_runner(spec: VariantSpec, study: StudyConfig) -> VariantRunner:
    """GT boxes, labels and colours queried by the QueryEngine: the ceiling of the query stage, not a model."""
    return VariantRunner(spec.name, None, spec.kind, None, QueryEngine())


# ------------------------------------------------------------------------------------------- learned variants

def require_model_training():
    """The training module, or ModelUnavailableError with the fixed message when it is missing or incomplete."""
    try:
        train = importlib.import_module("g2vlm_core.model.train")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("g2vlm_core.model"):
            raise ModelUnavailableError(TRAIN_MISSING) from e
        raise
    missing = [n for n in ("train",) if not callable(getattr(train, n, None))]
    if missing:
        raise ModelUnavailableError(f"{TRAIN_MISSING} (no {', '.join(missing)}())")
    return train


def check_variant_overrides(spec: VariantSpec) -> None:
    """Every override must name a field of the model's config dataclasses, else the ablation it stands for is
    not implemented in the model yet (say which field it needs)."""
    cfg_mod = importlib.import_module("g2vlm_core.model.config")
    sections = {"model": cfg_mod.ModelConfig, "loss": cfg_mod.LossConfig, "train": cfg_mod.TrainConfig}
    unknown = []
    for key in spec.overrides:
        section, name = key.split(".", 1)
        if name not in {f.name for f in dataclasses.fields(sections[section])}:
            unknown.append(f"{sections[section].__name__}.{name}")
    if unknown:
        raise ModelUnavailableError(f"model support for variant '{spec.name}' not implemented yet: "
                                    f"g2vlm_core.model.config has no {', '.join(unknown)}")


def _stage_overrides(spec: VariantSpec, study: StudyConfig, seed: int, stage_index: int, out_dir: Path,
                     init_from: str) -> dict:
    """Nested override dict for one training stage: the variant's overrides plus study size, seed and paths."""
    over: dict = {"train": {"seed": int(seed) * 1000 + stage_index, "out_dir": str(out_dir),
                            "data_root": str(study.resolve(study.learned.data_root)),
                            "max_steps": int(study.learned.max_steps[stage_index]), "device": study.learned.device,
                            "init_from": init_from}}
    for key, value in spec.overrides.items():
        section, name = key.split(".", 1)
        over.setdefault(section, {})[name] = value
    return over


def train_learned_variant(spec: VariantSpec, seed: int, study: StudyConfig) -> VariantRunner:
    """Train (or reuse the checkpoint of) one learned variant at one seed and return its runner.

    Checks run before any training so a study never spends hours on a variant it cannot evaluate; each raises
    ModelUnavailableError with the reason the report shows: the training module, the config fields the
    variant's overrides need. Stages listed in ``spec.stages`` run in order, each initialised from the previous
    one; a stage whose ``final`` checkpoint exists is not re-run. The checkpoint then labels keyframes through
    g2vlm_core.recognition.g2vlm.ModelLabeller.
    """
    train_mod = require_model_training()
    check_variant_overrides(spec)
    if spec.checkpoint:
        ckpt = study.resolve(spec.checkpoint)
        if not ckpt.exists():
            raise ModelUnavailableError(f"checkpoint {ckpt} does not exist")
    else:
        from ..model.config import load_config  # the model package imports torch: only for learned variants

        init_from = ""
        ckpt = None
        for stage in spec.stages:
            out_dir = study.resolve(study.learned.runs_dir) / spec.name / f"seed{seed}" / f"stage{stage}"
            final = out_dir / "final"
            if not (final / "model.safetensors").is_file():
                cfg = load_config(study.resolve(study.learned.stage_configs[stage - 1]),
                                  _stage_overrides(spec, study, seed, stage - 1, out_dir, init_from))
                log.info("training %s seed %d stage %d -> %s", spec.name, seed, stage, out_dir)
                final = Path(train_mod.train(cfg))
            init_from = str(final)
            ckpt = final
    rc = study.reconstruction
    base = PipelineConfig()
    pcfg = dataclasses.replace(base, fusion=dataclasses.replace(base.fusion, voxel_size_m=rc.voxel_size_m,
                                                                depth_max_m=rc.depth_max_m))
    device = study.learned.device
    if device == "auto":  # the training's convention; inference needs a concrete device
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    labeller = ModelLabeller.from_checkpoint(ckpt, Segmenter(pcfg.segmenter), device)
    return VariantRunner(spec.name, seed, spec.kind, lambda: PerceptionPipeline(pcfg, labeller=labeller),
                         QueryEngine(**labeller.query_args()), str(ckpt))
