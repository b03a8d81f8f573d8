"""The synthetic stand-ins: the generative model of what the datasets' patches and scenes hold, written
in the real files' layouts (Zindi, Landslide4Sense, scenes with known landslides, downloaded products).
Apart from the readers in ``formats``, so that a format module knows only its files; imports formats and core."""
