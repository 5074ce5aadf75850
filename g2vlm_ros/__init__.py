"""ROS 2 layer of g2vlm_ros: message conversions and thin nodes over g2vlm_core."""
# The rosidl-generated g2vlm_ros.msg / g2vlm_ros.srv may be installed in another sys.path entry than these
# sources (a colcon install space, or the project venv while developing): merge every g2vlm_ros directory.
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
__version__ = "0.1.0"
