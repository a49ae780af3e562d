"""The ASFDA module's library: small single-purpose pieces, most of them usable without Slicer's GUI.

- ``BackendTypes``: the records of the backend's HTTP contract (cases, jobs, model versions).
- ``BackendClient``: the HTTP client (standard library only).
- ``BackendProcess``: ``asfda serve`` as a background process (start, readiness, log, stop with children).
- ``BackgroundTasks``: blocking calls on worker threads, results handed back on the GUI thread.
- ``SceneLogic``: volumes, predictions and label maps in the MRML scene (Qt-free).
- ``LabelTerminology``: standard codes for common structure names.
- ``CaseTable``: the table of cases as a pure-Python model.
- ``Plots``: Dice per round and DKD against ASD as Slicer plot nodes.
- ``InstallLogic``: the engine's dependencies, installed on first use after one confirmation.
"""
