"""`python -m g2vlm_core.eval`: the g2vlm-eval command."""
import sys

from .cli import main

sys.exit(main())
