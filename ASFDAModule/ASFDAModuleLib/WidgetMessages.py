"""The Widget's status line and its background calls' error messages.

A mixin of ``ASFDAModuleWidget``: every backend call goes through ``_runTask`` (a worker of the Widget's
``tasks``, its result handed back on the GUI thread), and a failure shows a message box, or only a log line
for calls the timers repeat (``quiet``).
"""

import logging

import slicer

from .i18n import _


class WidgetMessages:
    """The status line (also logged) and background calls with their error messages."""

    def _setStatus(self, text: str, level: int = logging.INFO) -> None:
        self.ui.statusLabel.text = text
        logging.log(level, "ASFDA: %s", text)

    def _setModelStatus(self, text: str) -> None:
        """A status about the model, with why the active version stayed active if the guard held a round."""
        note = self.logic.heldBackNote
        self._setStatus(f"{text.rstrip('.')}. {note}" if note else text)

    def _setCaseStatus(self, text: str, caseId: str) -> None:
        """A status about the open case, with what its segmentation started from (the model's prediction
        or a few-shot proposal, and the evidence) when the backend says."""
        source = self.logic.startingFrom(caseId)
        self._setStatus(f"{text} {source[0].upper()}{source[1:]}." if source else text)

    def _runTask(self, name, function, onDone, failure: str, *args, quiet=False, onError=None) -> None:
        def reportError(error):
            self._updateButtons()
            if quiet:
                logging.warning("ASFDA: %s %s", failure, error)
            else:
                slicer.util.errorDisplay(f"{failure}\n\n{error}")

        submitted = self.tasks.submit(name, function, *args, onDone=onDone, onError=onError or reportError)
        if not submitted and not quiet:
            self._setStatus(_("Still busy with '{name}'; wait for it to finish.").format(name=name))
