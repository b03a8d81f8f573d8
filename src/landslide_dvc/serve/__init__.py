"""Serving: loading and verifying a model bundle, and ``landslide-dvc predict``. Serving imports
only core, never pipeline code or the formats."""
