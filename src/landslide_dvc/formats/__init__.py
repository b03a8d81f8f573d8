"""Dataset formats: the Zindi challenge layout, Landslide4Sense, and the scene-with-truth folder.
Formats import only core; the synthetic stand-ins that write these layouts live in ``synthetic``."""
