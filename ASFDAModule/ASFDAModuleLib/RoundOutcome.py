"""What a finished fine-tuning round did to the active model, in words the status line and the versions list
show: the backend's guard keeps the parent active when the round validates worse (``accepted`` false in the
version's metrics), and the radiologist must see which version is active and why.

Pure functions of the backend's records (``Job.result``, ``ModelVersion.metrics``); no Qt, no MRML.
"""

from __future__ import annotations

from .BackendTypes import Job, ModelVersion
from .i18n import _


def heldBack(metrics: dict) -> bool:
    """The guard kept this round's version from becoming the active one."""
    return metrics.get("accepted") is False


def diceComparison(metrics: dict) -> str:
    """``held-out Dice 0.812 < parent's 0.820``: the numbers the guard compared."""
    dice, parentDice = metrics.get("val_dice"), metrics.get("parent_val_dice")
    if not isinstance(dice, (int, float)) or not isinstance(parentDice, (int, float)):
        return _("it validated worse than its parent")
    return _("{validation} Dice {dice:.3f} < parent's {parent:.3f}").format(
        validation=metrics.get("validation") or _("validation"), dice=dice, parent=parentDice
    )


def heldBackNote(roundNumber, activeVersion: str | None, metrics: dict) -> str:
    """``Round 2 kept v0001 active: held-out Dice 0.812 < parent's 0.820.``"""
    return _("Round {round} kept {active} active: {comparison}.").format(
        round="?" if roundNumber is None else roundNumber,
        active=activeVersion or _("the previous version"),
        comparison=diceComparison(metrics),
    )


def roundDoneMessage(job: Job, activeVersion: str | None) -> str:
    """The status line when a round ends: the new active version, or why the previous one stays active.

    ``activeVersion`` is the version active while the round ran: the backend refuses activations then, so it
    is the parent the guard kept."""
    metrics = job.result.get("metrics") or {}
    if heldBack(metrics):
        return " ".join(
            [
                heldBackNote(job.result.get("round"), activeVersion, metrics),
                _("Its version {version} is kept; activate it in Model versions to use it anyway.").format(
                    version=job.modelVersion
                ),
            ]
        )
    return _("Round done: model version {version}.").format(version=job.modelVersion)


def versionStates(versions: list[ModelVersion]) -> dict[str, str]:
    """The versions list's "Active" cell of each version: which one is active, and why a newer one is not."""
    states = {}
    for version in versions:
        if version.active:
            states[version.id] = _("active")
        elif heldBack(version.metrics):
            states[version.id] = _("not activated: {comparison}").format(
                comparison=diceComparison(version.metrics)
            )
        else:
            states[version.id] = ""
    newest = max(versions, key=lambda v: v.round or 0, default=None)
    active = next((v for v in versions if v.active), None)
    if newest is not None and active is not None and newest is not active and heldBack(newest.metrics):
        states[active.id] = _("active: round {round} ({version}) validated worse").format(
            round=newest.round, version=newest.id
        )
    return states
