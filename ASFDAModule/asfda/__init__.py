"""ASFDA engine: active source-free domain adaptation of volumetric segmentation models.

Packages, one concern each: ``io`` (volumes, masks, pools of cases), ``models`` (loading, specs, versions),
``inference`` (sliding-window prediction with prototypes), ``scoring`` (ASD, DKD, baselines, selection),
``finetune`` (selective semi-supervised fine-tuning), ``session`` (the on-disk store), ``cli``.
"""

import os

# Operators Apple's MPS device lacks run on the CPU (with PyTorch's warning) instead of failing; read when
# torch is imported, so set before (harmless elsewhere). See ``models/devices.py``.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

__version__ = "0.1.0"
