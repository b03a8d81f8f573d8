"""LightGBM as the pipeline runs it: fixed deterministic settings, the seeded classifier, and the check
of a params section's `lgbm:` dict. Shared by the `lgbm` head (`fit_head`) and `stats_baseline`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from landslide_dvc.core.params import require

# Settings the project owns: reproducibility is not a user choice here (the seed is `<section>.seed`).
LGBM_FIXED: dict[str, Any] = {"deterministic": True, "force_row_wise": True, "verbose": -1}


def check_lgbm_params(lgbm: Mapping[str, Any], section: str) -> None:
    """Refuse a key of ``<section>.lgbm`` that is fixed here or that LGBMClassifier does not know.

    The message names the key with its section (``head.lgbm.n_trees``), as every params error does.
    """
    from lightgbm import LGBMClassifier  # imported on use: importing the pipeline does not load LightGBM

    known = set(LGBMClassifier().get_params())
    for key in lgbm:
        require(
            key not in LGBM_FIXED and key != "random_state",
            f"{section}.lgbm.{key} is fixed by the project (determinism; the seed is {section}.seed); remove it",
        )
        require(key in known, f"unknown key '{section}.lgbm.{key}'; use LGBMClassifier parameters such as n_estimators")


def lgbm_classifier(lgbm: Mapping[str, Any], seed: int) -> Any:
    """An unfitted LGBMClassifier: the section's settings, then the fixed ones and the seed on top."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**{**lgbm, **LGBM_FIXED, "random_state": seed})
