"""`python -m landslide_dvc ...`: the `landslide-dvc` command without an installed console script."""

import sys

from landslide_dvc.cli import main

sys.exit(main())
