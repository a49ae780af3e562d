"""Minimal doubles for the parts of Slicer that the ``slicer-core`` wheel cannot provide.

``slicer-core`` has the real MRML, logics and ``slicer.util``, but no Qt: no ``qt`` module, no
``slicer.ScriptedLoadableModule`` base classes and no ``slicer.parameterNodeWrapper`` (both import Qt). To
import ``ASFDAModule.py`` and run its Logic and its ``ScriptedLoadableModuleTest`` headless, these stand in:

- ``qt``: an empty module; the module file only uses Qt inside the Widget, which the tests never build.
- ``slicer.ScriptedLoadableModule``: the four base classes, with Slicer's ``getParameterNode`` behaviour
  (a singleton ``vtkMRMLScriptedModuleNode`` in ``slicer.mrmlScene``, which is real here).
- ``slicer.parameterNodeWrapper``: a decorator giving typed attributes with their defaults; plain values
  (text, numbers, flags) are also written to the node with ``SetParameter``, as Slicer does, so that observers
  of the node's ModifiedEvent see changes; ``connectGui`` only records the GUI it was given.
- ``slicer.i18n``: ``tr`` and ``translate`` return the text unchanged and record it in ``TRANSLATED``, so a
  test can check which strings went through them.

Nothing of the module's own code is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sys
import types
import typing
import unittest

TRANSLATED: list[str] = []


def _qtModule() -> types.ModuleType:
    return types.ModuleType("qt")


def _i18nModule() -> types.ModuleType:
    module = types.ModuleType("slicer.i18n")

    def tr(text):
        TRANSLATED.append(text)
        return text

    def translate(context, text):
        TRANSLATED.append(text)
        return text

    module.tr, module.translate = tr, translate
    return module


def _scriptedLoadableModule() -> types.ModuleType:
    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

        def setup(self):  # Slicer's adds the Reload and Test section (Qt)
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__.removesuffix("Logic")

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag(self.moduleName)
                node.SetName(self.moduleName)
                node.SetModuleName(self.moduleName)
                node = slicer.mrmlScene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            logging.info(message)

    for cls in (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    ):
        setattr(module, cls.__name__, cls)
    return module


def _parameterNodeWrapperModule() -> types.ModuleType:
    module = types.ModuleType("slicer.parameterNodeWrapper")

    class Choice:
        def __init__(self, choices):
            self.choices = list(choices)

    class WithinRange:
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

    def defaultFor(annotation):
        base = (
            typing.get_origin(annotation) is typing.Annotated and typing.get_args(annotation)[0] or annotation
        )
        if base is pathlib.Path:
            return pathlib.Path()
        return {str: "", int: 0, float: 0.0, bool: False}.get(base)

    def parameterNodeWrapper(cls):
        defaults = {
            name: cls.__dict__.get(name, defaultFor(annotation))
            for name, annotation in typing.get_type_hints(cls, include_extras=True).items()
        }

        class Wrapper:
            def __init__(self, parameterNode):
                object.__setattr__(self, "parameterNode", parameterNode)
                object.__setattr__(self, "_values", dict(defaults))

            def __getattr__(self, name):
                values = object.__getattribute__(self, "_values")
                if name not in values:
                    raise AttributeError(name)
                return values[name]

            def __setattr__(self, name, value):
                if name not in self._values:
                    raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
                self._values[name] = value
                if isinstance(value, (str, int, float, bool)):
                    self.parameterNode.SetParameter(name, str(value))  # fires ModifiedEvent, as in Slicer

            def connectGui(self, gui):
                object.__setattr__(self, "gui", gui)
                return object()

            def disconnectGui(self, tag):
                object.__setattr__(self, "gui", None)

        Wrapper.__name__ = Wrapper.__qualname__ = cls.__name__
        return Wrapper

    module.Choice, module.WithinRange, module.parameterNodeWrapper = Choice, WithinRange, parameterNodeWrapper
    return module


@contextlib.contextmanager
def installed():
    """Install the doubles for the duration of a test, and remove them afterwards."""
    import slicer

    doubles = {
        "qt": _qtModule(),
        "slicer.ScriptedLoadableModule": _scriptedLoadableModule(),
        "slicer.parameterNodeWrapper": _parameterNodeWrapperModule(),
        "slicer.i18n": _i18nModule(),
    }
    saved = {name: sys.modules.get(name) for name in doubles}
    savedAttributes = {name: getattr(slicer, name.split(".")[1], None) for name in doubles if "." in name}
    TRANSLATED.clear()
    sys.modules.update(doubles)
    for name in [n for n in sys.modules if n == "ASFDAModuleLib" or n.startswith("ASFDAModuleLib.")]:
        sys.modules.pop(name)  # imported again with the doubles (the Logic's base class, _())
    for name, double in doubles.items():
        if "." in name:
            setattr(slicer, name.split(".")[1], double)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in savedAttributes.items():
            if value is None:
                delattr(slicer, name.split(".")[1])
            else:
                setattr(slicer, name.split(".")[1], value)
