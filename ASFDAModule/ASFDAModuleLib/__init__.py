"""The ASFDA module's library: small single-purpose pieces, most of them usable without Slicer's GUI.

- ``ModuleLogic``: the module's Logic, the whole workflow without Qt (scripts, tests and the Widget call it);
  it holds the state and the backend, ``PoolLogic`` (cases, ranking, model versions, query, plots) and
  ``AnnotationLogic`` (serve and load a case, save its mask, rounds) are its steps.
- ``WorkflowTypes``: the records its steps hand to each other.
- ``Parameters``: the parameter node (saved with the scene); ``Settings``: what survives a restart.
- ``BackendTypes``: the records of the backend's HTTP contract (cases, jobs, model versions).
- ``BackendClient``: the HTTP client (standard library only).
- ``BackendProcess``: ``asfda serve`` as a background process (start, readiness, log, stop with children).
- ``ProcessTree``: stopping a process with all its descendants (psutil, else its process group).
- ``BackgroundTasks``: blocking calls on worker threads, results handed back on the GUI thread.
- ``SceneLogic``: volumes, case tags, the Segment Editor and views in the MRML scene (Qt-free); its mixin
  ``SegmentationFiles`` turns predictions into segmentations and segmentations into label maps, in the
  volume's geometry; ``SegmentLabels``: which label value and colour each segment has (pure functions).
- ``LabelTerminology``: standard codes for common structure names.
- ``CaseTable``: the table of cases as a pure-Python model.
- ``RoundOutcome``: what a finished round did to the active model, in words (the guard may keep the parent).
- ``CaseMarks``: skipped and flagged cases, kept in the session; ``EditEffort``: Dice between prediction and
  saved mask, per case and round.
- ``Plots``: Dice per round, edit effort, and DKD against ASD as Slicer plot nodes.
- ``InstallLogic``: the engine's dependencies, installed on first use after one confirmation, with what
  Slicer provides pinned.
- The Widget's mixins (it only wires the UI; these say what its buttons do, on the Logic): ``BackendActions``
  (start, stop, connect, poll), ``PoolActions`` (cases, query strategy, model versions, plots),
  ``AnnotationActions`` (open, save, skip, flag), ``JobFollowing`` (the ranking's scoring job and fine-tuning
  rounds, with their timers), ``PredictionUpdate`` (a newer model's prediction of the open case),
  ``WidgetMessages`` (status line, background calls and their errors).
- ``WidgetViews``: drawing the Qt tables and bars (the Widget's only Qt-heavy helper; needs the application).
- ``Paths``: path fields (unset is empty) and the model path check; ``SampleData``: the samples registered
  with Slicer's Sample Data; ``SlicerEnvironment``: application or headless; ``i18n``: ``_()``.
"""
