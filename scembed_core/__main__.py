"""Entry point of ``python -m scembed_core``."""

import sys

from .cli import main

sys.exit(main())
