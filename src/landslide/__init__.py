"""landslide-dvc."""
