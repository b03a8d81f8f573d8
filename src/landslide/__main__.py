"""`python -m landslide ...`: the `landslide` command without an installed console script."""

import sys

from landslide.console import main

sys.exit(main())
