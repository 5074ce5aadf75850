"""`g2vlm-eval` / `python -m g2vlm_core.eval`: run the evaluation study of config/eval_study.yaml and write the report.

Usage::

    g2vlm-eval                                   # config/eval_study.yaml -> reports/eval/
    g2vlm-eval --config config/eval_study.yaml --out reports/eval
    g2vlm-eval --only real                       # only the real-data reconstruction / consistency rows
    g2vlm-eval --skip-learned --scenes 5         # geometry rows only, 5 synthetic scenes
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from .config import StudyConfigError, load_study_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "eval_study.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="g2vlm-eval", description="Run the G2VLM evaluation study and write a "
                                "markdown report, a JSON file with every number and figures.")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="study YAML (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: the config's output_dir)")
    p.add_argument("--only", choices=("all", "synthetic", "real"), default="all", help="which part to run")
    p.add_argument("--skip-learned", action="store_true",
                   help="do not check or train learned variants (they are reported as not run)")
    p.add_argument("--scenes", type=int, default=None, help="override synthetic.num_scenes (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Open3D's C++ warnings and per-frame odometry failures are expected in a study; keep the console readable
    logging.getLogger("g2vlm_core.geometry.odometry").setLevel(logging.ERROR)
    logging.getLogger("g2vlm_core.geometry.fusion").setLevel(logging.WARNING)
    try:
        study = load_study_config(args.config)
        if args.scenes is not None:
            if args.scenes < 0:
                raise StudyConfigError(f"--scenes must be >= 0, got {args.scenes}")
            study = dataclasses.replace(study, synthetic=dataclasses.replace(study.synthetic,
                                                                             num_scenes=args.scenes))
    except StudyConfigError as e:
        print(f"g2vlm-eval: error: invalid study config: {e}", file=sys.stderr)
        return 2
    from .report import write_report
    from .study import run_study

    out = Path(args.out) if args.out else study.resolve(study.output_dir)
    command = "g2vlm-eval " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = run_study(study, skip_learned=args.skip_learned, only=args.only, progress=not args.no_progress)
    paths = write_report(results, out, command.strip())
    print(f"report: {paths['markdown']}\njson:   {paths['json']}")
    for name, v in results["variants"].items():
        if v["status"] != "ok":
            print(f"not run: {name}: {v['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
