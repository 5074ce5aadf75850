"""``python -m g2vlm_core.synth``: the g2vlm-synth command."""
import sys

from .cli import main

sys.exit(main())
