"""Geometry: cameras and poses, TSDF fusion, RGB-D odometry, class-agnostic 3D segmentation, geometric metrics."""
