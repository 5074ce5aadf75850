"""g2vlm_core: geometry, fusion, object map, scene graph, spatial reasoning, model, data and evaluation (no ROS)."""
__version__ = "0.1.0"
