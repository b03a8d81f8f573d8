import sys

from landslide_dvc.experiments.command import main

sys.exit(main())
