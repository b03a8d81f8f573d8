"""Dataset formats: the Zindi challenge layout, Landslide4Sense, and the synthetic stand-ins that
write both layouts. Formats import only core."""
