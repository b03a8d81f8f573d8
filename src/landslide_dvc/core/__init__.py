"""Core: the building blocks every layer uses (bands, channels, scaling, params, models, training,
inference, devices, metrics, heads, the bundle's files). Core imports no other layer."""
