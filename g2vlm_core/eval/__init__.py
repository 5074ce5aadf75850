"""Evaluation of reconstruction, scene graphs and grounding with bootstrap CIs and paired tests (g2vlm-eval)."""
from .config import StudyConfig, StudyConfigError, load_study_config
from .reconstruction import ReconstructionEvalConfig, ReconstructionResult, evaluate_reconstruction
from .scene_graph import SceneGraphEvalConfig, SceneGraphResult, evaluate_scene_graph, match_objects
from .stats import (ConfidenceInterval, TestResult, bootstrap_ci, holm_correction, paired_bootstrap_test,
                    paired_permutation_test)

__all__ = ["StudyConfig", "StudyConfigError", "load_study_config", "ReconstructionEvalConfig",
           "ReconstructionResult", "evaluate_reconstruction", "SceneGraphEvalConfig", "SceneGraphResult",
           "evaluate_scene_graph", "match_objects", "ConfidenceInterval", "TestResult", "bootstrap_ci",
           "holm_correction", "paired_bootstrap_test", "paired_permutation_test"]
