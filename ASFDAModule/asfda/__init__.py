"""ASFDA engine: active source-free domain adaptation of volumetric segmentation models.

Packages, one concern each: ``io`` (volumes, masks, pools of cases), ``models`` (loading, specs, versions),
``inference`` (sliding-window prediction with prototypes), ``scoring`` (ASD, DKD, baselines, selection),
``finetune`` (selective semi-supervised fine-tuning), ``session`` (the on-disk store), ``cli``.
"""

__version__ = "0.1.0"
