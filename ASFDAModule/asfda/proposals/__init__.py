"""Few-shot proposals without training: the cases a session has labelled propose the next case's
segmentation, by registration and label fusion, and a leave-one-out over them chooses what to serve.

Everything works on model-space arrays ((x, y, z) volumes, class values 0..C-1) and returns a
:class:`Proposal` (class shares (C, x, y, z) and a per-voxel confidence).

- :func:`propagate_all` (``propagation.py``): register each labelled :class:`Case` onto the query (affine,
  then a coarse B-spline, Mattes mutual information, SimpleITK) and warp its one-hot label map;
  returns :class:`WarpedSupport` records, most similar first.
- ``fusion.py``: :func:`majority_vote`, :func:`weighted_vote` (local image similarity),
  :func:`similarity_weights` (global), :func:`model_proposal`, :func:`agreement` (the model and a
  propagation; ``Proposal.reliable`` gives the agreed, confident voxels for pseudo-labels).
- ``selection.py``: :func:`choose_proposal` (leave-one-out Dice of each :class:`ProposalKind` against the
  saved masks; a :class:`ProposalChoice` whose ``summary()`` the module shows) and :func:`propose`
  (the chosen kind for the next case).
- ``sam.py`` and ``slices.py`` (the optional extra ``sam``, imported on use): :class:`LiteMedSAM` (box in,
  mask out on a 2-D slice) and ``refine_label_map`` (a coarse label map refined slice by slice, made
  consistent across slices). Measured at 3 mm it did not improve the coarse proposals (README).
"""

from .fusion import (
    Proposal,
    ProposalKind,
    agreement,
    as_probabilities,
    local_dissimilarity,
    majority_vote,
    model_proposal,
    similarity_weights,
    weighted_vote,
)
from .propagation import (
    Case,
    DeformableStage,
    RegistrationSettings,
    WarpedSupport,
    normalized_mutual_information,
    propagate,
    propagate_all,
)
from .selection import (
    CANDIDATES,
    ProposalChoice,
    choose_proposal,
    describe,
    foreground_dice,
    propose,
    unvalidated,
)

__all__ = [
    "CANDIDATES",
    "Case",
    "DeformableStage",
    "Proposal",
    "ProposalChoice",
    "ProposalKind",
    "RegistrationSettings",
    "WarpedSupport",
    "agreement",
    "as_probabilities",
    "choose_proposal",
    "describe",
    "foreground_dice",
    "local_dissimilarity",
    "majority_vote",
    "model_proposal",
    "normalized_mutual_information",
    "propagate",
    "propagate_all",
    "propose",
    "similarity_weights",
    "unvalidated",
    "weighted_vote",
]
