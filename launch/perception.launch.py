"""Start the g2vlm perception node: ros2 launch g2vlm_ros perception.launch.py [arg:=value ...]

Arguments: params_file, namespace, device (auto|cpu|cuda), pose_source (topic|tf|odometry), recognizer
(coco|hf|g2vlm|none), the camera topics (rgb_topic, depth_topic, camera_info_topic, pose_topic), use_sim_time
(true for bag replay with --clock) and shutdown_timeout. Only launch / launch_ros APIs that Humble, Jazzy and Kilted
share.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    args = [
        DeclareLaunchArgument("params_file", description="Node parameters (YAML)",
                              default_value=PathJoinSubstitution([FindPackageShare("g2vlm_ros"), "config",
                                                                  "perception.yaml"])),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        DeclareLaunchArgument("device", default_value="auto", choices=["auto", "cpu", "cuda"],
                              description="Where fusion runs"),
        DeclareLaunchArgument("pose_source", default_value="topic", choices=["topic", "tf", "odometry"],
                              description="Where the camera pose comes from"),
        DeclareLaunchArgument("recognizer", default_value="coco", choices=["coco", "hf", "g2vlm", "none"],
                              description="What names the objects: coco (real cameras, offline), hf (open "
                                          "vocabulary, set hf_detector / hf_embedder in params_file), g2vlm (the "
                                          "synthetic demo's model), none (geometry only)"),
        DeclareLaunchArgument("rgb_topic", default_value="/camera/color/image_raw", description="Colour images"),
        DeclareLaunchArgument("depth_topic", default_value="/camera/aligned_depth_to_color/image_raw",
                              description="Depth registered to colour (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info",
                              description="CameraInfo of the colour camera"),
        DeclareLaunchArgument("pose_topic", default_value="/camera/pose",
                              description="PoseStamped of the camera optical frame in the map frame"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)"),
        DeclareLaunchArgument("shutdown_timeout", default_value="30",
                              description="Seconds the node has after Ctrl-C to finish (its map saved, with "
                                          "save_on_shutdown) before launch sends SIGTERM, which it ignores by then; "
                                          "launch's SIGKILL follows 5 s later"),
    ]
    node = Node(
        package="g2vlm_ros",
        executable="perception_node",
        name="g2vlm_perception",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        # launch's defaults (SIGTERM 5 s after SIGINT, SIGKILL 5 s later) could kill a node still saving a large map
        sigterm_timeout=LaunchConfiguration("shutdown_timeout"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"device": LaunchConfiguration("device"), "pose_source": LaunchConfiguration("pose_source"),
             "recognizer": LaunchConfiguration("recognizer"),
             "use_sim_time": LaunchConfiguration("use_sim_time")},
        ],
        remappings=[
            ("color/image_raw", LaunchConfiguration("rgb_topic")),
            ("depth/image_raw", LaunchConfiguration("depth_topic")),
            ("color/camera_info", LaunchConfiguration("camera_info_topic")),
            ("camera_pose_in", LaunchConfiguration("pose_topic")),
        ],
    )
    return LaunchDescription(args + [node])
