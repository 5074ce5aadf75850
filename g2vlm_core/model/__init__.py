"""G2VLM model package: configs, encoders, fusion, heads, losses, checkpoints, training data, training and inference."""
from .config import Config, LossConfig, ModelConfig, TrainConfig, load_config
from .model import G2VLM

__all__ = ["Config", "G2VLM", "LossConfig", "ModelConfig", "TrainConfig", "load_config"]
