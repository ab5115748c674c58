"""unetlib: Ronneberger, Fischer & Brox (2015), "U-Net", as a small reproducible package.

Top-level names are resolved lazily so that ``import unetlib`` stays fast (torch is only
imported when a name that needs it is first used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # model and prediction (paper sections 2 and 3)
    "UNet": "unetlib.model",
    "output_size": "unetlib.model",
    "valid_input_size": "unetlib.model",
    "predict_tiled": "unetlib.tiling",
    # losses (paper eq. 1)
    "weighted_cross_entropy": "unetlib.losses",
    "bce_dice_loss": "unetlib.losses",
    "soft_dice_loss": "unetlib.losses",
    # augmentation (paper section 3.1)
    "deform_grid": "unetlib.elastic",
    "deform_random_grid": "unetlib.elastic",
    "Augment": "unetlib.augment",
    # weight map (paper eq. 2)
    "weight_map": "unetlib.weights",
    "separate_touching": "unetlib.weights",
    # data
    "load_dataset": "unetlib.data",
    "Sample": "unetlib.data",
    "data_root": "unetlib.paths",
    # training and evaluation
    "TrainConfig": "unetlib.config",
    "train_config": "unetlib.profiles",
    # cells from probabilities (the paper's way and a seeded watershed)
    "instances_from_probability": "unetlib.instances",
    "choose_instances": "unetlib.instances",
    "InstanceParams": "unetlib.instances",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'unetlib' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
