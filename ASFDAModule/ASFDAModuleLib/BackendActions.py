"""The Widget's backend controls: start and stop ``asfda serve``, connect to a running one, and follow its log
and readiness on the poll timer.

A mixin of ``ASFDAModuleWidget``: it uses the Widget's ``ui``, ``logic``, parameter node and the helpers of
``WidgetMessages``; the slots are connected in the Widget's ``setup``.
"""

import slicer

from .BackendProcess import BackendState
from .BackendTypes import BackendInfo
from .i18n import _


class BackendActions:
    """Start, stop, connect; the poll timer's slot; what a newly reached backend shows."""

    def onStartBackend(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the ASFDA backend."), waitCursor=True):
            if not self.logic.installLogic(slicer.util.confirmOkCancelDisplay).ensureDependencies():
                return
            p = self._parameterNode
            self.logic.startBackend(p.sessionFolder, p.modelPath, p.device, dataFolder=p.dataFolder)
            self.ui.backendLog.clear()
            self._setStatus(_("Backend starting..."))
        self._updateButtons()

    def onStopBackend(self) -> None:
        # Stopping waits for the backend to finish what it writes: off the GUI thread.
        self._setStatus(_("Stopping the backend..."))
        self._runTask("stop backend", self.logic.stopBackend, self._onBackendStopped, _("Stopping failed."))

    def _onBackendStopped(self, _result) -> None:
        self._setStatus(_("Backend stopped."))
        self._updateButtons()

    def onConnect(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to connect to the backend.")):
            self.logic.connect(self._parameterNode.backendUrl, self.ui.tokenLineEdit.text or None)
            self._fetchInfo()

    def _fetchInfo(self) -> None:
        self._runTask("info", self.logic.fetchInfo, self._onBackendInfo, _("Cannot reach the backend."))

    def onPoll(self) -> None:
        """Every 100 ms on the GUI thread: finished background calls, the backend's log and readiness."""
        self.tasks.poll()
        process = self.logic.backendProcess
        if process is None:
            return
        for line in process.takeNewLogLines():
            self.ui.backendLog.appendPlainText(line)
        state = process.state
        if state is BackendState.STARTING:
            serverInfo = process.pollReady()
            if serverInfo is not None:
                self.logic.connectToServer(serverInfo)
                self._fetchInfo()
        elif state is BackendState.EXITED:
            wasReady = process.serverInfo is not None
            self.logic.forgetBackend()
            self._stopFollowingJobs()
            what = _("stopped unexpectedly") if wasReady else _("did not start")
            message = _("The ASFDA backend {what} (exit code {code}).").format(
                what=what, code=process.returnCode
            )
            self._setStatus(message)
            slicer.util.errorDisplay(
                message, detailedText=_("Last lines of its log:") + "\n" + process.logTail()
            )

    def _onBackendInfo(self, info: BackendInfo) -> None:
        self._setModelStatus(info.summary)
        self._updateButtons()
        self._offerPredictionUpdate()
        self.onRefresh()
        self.onRefreshModels()
        self._runTask(
            "query",
            self.logic.fetchQuerySettings,
            self._showQuerySettings,
            _("No query settings."),
            quiet=True,
        )
