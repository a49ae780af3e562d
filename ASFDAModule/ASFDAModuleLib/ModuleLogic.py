"""The module's workflow without any GUI: scripts, tests and the Widget call it.

Methods marked *network* block on the backend and touch neither Qt nor MRML (the Widget runs them on worker
threads); methods marked *scene* change the MRML scene and belong on the main thread.

This file holds the Logic's state and its backend (start, connect, stop); the workflow's steps come from two
mixins: ``PoolLogic`` (cases, ranking, model versions, query strategy, plots) and ``AnnotationLogic`` (serve
and load a case, save its mask, fine-tuning rounds).
"""

from __future__ import annotations

import hashlib
import pathlib

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from .AnnotationLogic import AnnotationLogic
from .BackendClient import BackendClient
from .BackendProcess import BackendLaunch, BackendProcess, BackendProcessProtocol, ServerInfo
from .BackendTypes import BackendInfo
from .CaseMarks import CaseMarks
from .CaseTable import CaseTableModel
from .EditEffort import EditEffortLog, OpenedCases
from .i18n import _
from .InstallLogic import InstallLogic
from .Parameters import ASFDAModuleParameterNode
from .Paths import checkModelPath, pathOrNone
from .PoolLogic import PoolLogic
from .SceneLogic import SceneLogic
from .SlicerEnvironment import backendEnvironment, defaultCacheDir, moduleLogic
from .WorkflowTypes import CaseFiles

MODULE_DIR = pathlib.Path(__file__).resolve().parent.parent  # holds ASFDAModule.py and the asfda package
MODULE_FOLDER = "slicer"  # the module's own files in a session folder (marks, edit effort)


class ASFDAModuleLogic(PoolLogic, AnnotationLogic, ScriptedLoadableModuleLogic):
    """Start or connect to a backend, fill the pool, rank it, serve cases, save masks, train, roll back."""

    def __init__(self, scene=None, cacheDir=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.sceneLogic = SceneLogic(self.scene, volumesLogic=moduleLogic("volumes"))
        self.caseTable = CaseTableModel()
        self.cacheDir = pathlib.Path(cacheDir) if cacheDir else defaultCacheDir()
        self.backendProcess: BackendProcessProtocol | None = None
        self.client: BackendClient | None = None
        self.info: BackendInfo | None = None
        self.sessionDir: pathlib.Path | None = None  # set for a backend this logic started
        self.marks: CaseMarks | None = None
        self.effort: EditEffortLog | None = None
        self.opened: OpenedCases | None = None
        self.openCaseFiles: dict[str, CaseFiles] = {}
        self.heldBackNote = ""  # why the active version stayed active, if the guard held the last round back

    def getParameterNode(self):
        return ASFDAModuleParameterNode(super().getParameterNode())

    def installLogic(self, confirm) -> InstallLogic:
        return InstallLogic(MODULE_DIR / "Resources" / "requirements.txt", confirm)

    # -- backend -----------------------------------------------------------------------------------

    def startBackend(self, sessionDir, model=None, device="auto", port=0, dataFolder=None, python=None):
        """Start ``asfda serve`` in the background; poll ``backendProcess.pollReady()`` or waitForBackend."""
        sessionDir = pathOrNone(sessionDir)
        if sessionDir is None:
            raise ValueError(
                _("choose a session folder for the backend (it holds the cases and model versions)")
            )
        model = checkModelPath(model)
        dataFolder = pathOrNone(dataFolder)
        self.stopBackend()
        self.sessionDir = sessionDir
        launch = BackendLaunch(
            sessionDir=self.sessionDir,
            model=model,
            device=device,
            port=port,
            python=python,
            enginePath=MODULE_DIR,
            allowDirs=[dataFolder] if dataFolder else [],
            environment=backendEnvironment(),
        )
        self.backendProcess = BackendProcess(launch, logFile=self.cacheDir / "backend.log")
        self.backendProcess.start()
        self._openModuleFiles(self.sessionDir / MODULE_FOLDER)
        return self.backendProcess

    def waitForBackend(self, timeout: float = 120.0) -> BackendInfo:
        """Blocking: wait until the started backend is ready and connect to it (scripts and tests)."""
        self.connectToServer(self.backendProcess.waitUntilReady(timeout))
        return self.fetchInfo()

    def connectToServer(self, serverInfo: ServerInfo) -> BackendClient:
        self.client = BackendClient(serverInfo.url, serverInfo.token)
        if self.marks is None and self.sessionDir is not None:
            self._openModuleFiles(self.sessionDir / MODULE_FOLDER)
        return self.client

    def connect(self, url: str, token: str | None) -> BackendClient:
        """Use a backend that runs elsewhere (a GPU server); volumes then travel by upload."""
        if not url:
            raise ValueError(_("enter the backend's URL, e.g. http://gpu-server:8000"))
        self.stopBackend()
        self.sessionDir = None
        self.client = BackendClient(url, token)
        # The module's own records of a remote session live in the cache, one folder per backend URL.
        self._openModuleFiles(self.cacheDir / "remote" / hashlib.sha1(url.encode()).hexdigest()[:12])
        return self.client

    def stopBackend(self) -> None:
        """Stop the backend this logic started, with its children; a remote backend is left alone."""
        if self.backendProcess is not None:
            self.backendProcess.stop()
            if self.backendIsLocal:
                self.client = None

    def forgetBackend(self) -> None:
        """The local backend exited by itself: drop it and its client (its log stays in the cache folder)."""
        self.backendProcess = None
        if self.backendIsLocal:
            self.client = None

    @property
    def backendIsLocal(self) -> bool:
        return self.sessionDir is not None

    def fetchInfo(self) -> BackendInfo:
        """*network*: asked again whenever the model may have changed (a round, an activation)."""
        self.info = self._client().info()
        return self.info

    # -- helpers -----------------------------------------------------------------------------------

    def _client(self) -> BackendClient:
        if self.client is None:
            raise RuntimeError(_("no backend: start one, or connect to one by its URL"))
        return self.client

    def _marks(self) -> CaseMarks:
        if self.marks is None:
            raise RuntimeError(_("no session: start a backend or connect to one first"))
        return self.marks

    def _openModuleFiles(self, folder: pathlib.Path) -> None:
        self.marks, self.effort, self.opened = CaseMarks(folder), EditEffortLog(folder), OpenedCases(folder)
