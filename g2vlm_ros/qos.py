"""QoS profiles chosen for what each topic means (shared by the nodes, the smoke run and the tests)."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# The scene graph is latest-state: latched like /tf_static, so a planner that starts late still gets it.
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)
# Camera streams: newest data matters, a lost frame is not worth a retransmission.
SENSOR = qos_profile_sensor_data
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def sensor_qos(reliable: bool) -> QoSProfile:
    """Best-effort sensor QoS by default; reliable for drivers or bag players that publish reliably only."""
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable else SENSOR
