"""Regenerate config/perception.yaml from the node's parameter declarations (tests/ros/test_launch.py checks that
the file matches them):  python scripts/write_params_yaml.py"""
import json
from pathlib import Path

from g2vlm_ros.perception_node import PARAMS


def main() -> None:
    lines = ["# Parameters of the g2vlm_perception node (every one is declared, with its range, in "
             "g2vlm_ros/perception_node.py).", "# '/**' applies them whatever the node's namespace.", "/**:",
             "  ros__parameters:"]
    for p in PARAMS:
        v = p.default
        val = ("true" if v else "false") if isinstance(v, bool) else (json.dumps(v) if isinstance(v, str) else repr(v))
        lines.append(f"    # {p.description}" + (f" One of: {', '.join(p.choices)}." if p.choices else "")
                     + (f" Range [{p.min}, {p.max}]." if p.min is not None else ""))
        lines.append(f"    {p.name}: {val}")
    out = Path(__file__).resolve().parents[1] / "config" / "perception.yaml"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
