"""`python -m randguard`."""

import sys

from .process.cli import main

sys.exit(main())
