"""`python -m randguard`."""

import sys

from .cli import main

sys.exit(main())
