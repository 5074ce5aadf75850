"""Procedural indoor RGB-D scenes with full ground truth (geometry, instances, relations, language) and writers."""
from .config import (CATEGORIES, CATEGORY_ID, OBJECT_CATEGORIES, OBJECT_ID_OFFSET, SynthConfig, SynthConfigError,
                     split_of_seed)
from .dataset import SynthDataset, SynthScene
from .language import resolve_program
from .records import QAPair, ReferringExpression

# Generator and writers pull in open3d; load them on first use so the reader stays light for training code.
_LAZY = {"GeneratedScene": "generator", "SceneGenerator": "generator", "make_intrinsics": "generator",
         "write_dataset": "writer", "write_scene": "writer", "BagWriter": "bag"}

__all__ = ["CATEGORIES", "CATEGORY_ID", "OBJECT_CATEGORIES", "OBJECT_ID_OFFSET", "SynthConfig",
           "SynthConfigError", "split_of_seed", "SynthDataset", "SynthScene", "resolve_program", "QAPair",
           "ReferringExpression", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
