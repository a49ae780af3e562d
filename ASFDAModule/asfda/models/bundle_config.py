"""Reading a MONAI bundle's config as MONAI reads it, without running the bundle's code unless told to.

MONAI's config language is code: a ``$`` string is a Python expression passed to ``eval`` and a
``_target_`` may name any importable callable, the bundle's own ``scripts/`` included. So a bundle is read
with MONAI's ``ConfigParser`` (JSON or YAML, ``@x``, ``$@x``, ``%file#key``) in one of two modes:

- by default, expressions that are plain data (literals, references, arithmetic, comparisons,
  conditionals, ``len``/``min``/``max`` and the like: ``$[96, 96, 96]``, ``$@bundle_root + '/models'``,
  ``$[1.5] * 3 if @highres else [3.0] * 3``) are evaluated by a closed evaluator, and components may only
  be classes of MONAI's networks, transforms and inferers. Anything else (a call, an attribute, a lambda,
  another ``_target_``) is refused by name when the engine needs its value, and no import is made;
- with ``trust_code`` (``--trust-bundle-code``), MONAI evaluates everything itself, with the bundle's
  folder on the import path for its ``scripts/``; ``torch.load`` and ``torch.device('cuda')`` in its
  expressions are pointed at the device the engine builds the network on.
"""

from __future__ import annotations

import ast
import contextlib
import pydoc
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch
from monai.bundle import ConfigComponent, ConfigExpression, ConfigItem, ConfigParser

from ..errors import CheckpointError

REFERENCE_IN_EXPRESSION = re.compile(r"__local_refs\['([^']+)'\]")
MONAI_COMPONENTS = ("monai.networks.", "monai.transforms.", "monai.inferers.")
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
TRUST_FLAG = "--trust-bundle-code"
LOCAL_REFS = "__local_refs"  # the name MONAI's resolver gives referenced values inside an expression
DATA_NODES = (
    ast.Expression,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.IfExp,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Subscript,
    ast.Slice,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


# Pure functions of data that configs use to derive sizes (``$len(@spatial_size)``).
SAFE_FUNCTIONS = {f.__name__: f for f in (len, min, max, abs, round, int, float, bool, str, tuple, list, sum)}


class BundleCodeRefused(CheckpointError):
    """A bundle's config needs its code run (an expression, a non-MONAI component) and trust was not given."""


def config_path(folder: Path) -> Path | None:
    """``configs/inference.json`` (or ``.yaml``/``.yml``) of a bundle folder, None when there is none."""
    return next((folder / "configs" / n for n in CONFIG_NAMES if (folder / "configs" / n).is_file()), None)


def is_bundle(folder: Path) -> bool:
    return folder.is_dir() and config_path(folder) is not None


def is_data_expression(text: str) -> bool:
    """An expression that only combines data: no call, attribute, name (but referenced values), import."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id != LOCAL_REFS and node.id not in SAFE_FUNCTIONS:
                return False
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in SAFE_FUNCTIONS or node.keywords:
                return False
        elif not isinstance(node, DATA_NODES):
            return False
    return True


def refusal(item_id: str, what: str, folder: Path | None) -> BundleCodeRefused:
    return BundleCodeRefused(
        f"the bundle's `{item_id}` is code ({what}); asfda runs a bundle's code only when you trust the "
        f"bundle: rerun with {TRUST_FLAG}",
        folder,
    )


class DataExpression(ConfigExpression):
    """A ``$`` expression evaluated only when it is plain data."""

    folder: Path | None = None

    def evaluate(self, globals=None, locals=None):
        text = str(self.get_config())[len(self.prefix) :]
        if self.is_import_statement(self.get_config()):
            # MONAI runs every import up front; untrusted, none is made (`$import scripts` is code)
            return None
        if not is_data_expression(text):
            written = REFERENCE_IN_EXPRESSION.sub(r"@\1", text.strip())  # as the bundle wrote it
            raise refusal(self.id, f"`${written[:120]}`", self.folder)
        scope = {"__builtins__": SAFE_FUNCTIONS, LOCAL_REFS: (globals or {}).get(LOCAL_REFS, {})}
        return eval(compile(ast.parse(text.strip(), mode="eval"), self.id, "eval"), scope, locals)


class MonaiComponent(ConfigComponent):
    """A ``_target_`` that must be a class of MONAI's networks, transforms or inferers: MONAI also has
    functions that run commands (``monai.utils.run_cmd``), so "anything from MONAI" would not do."""

    folder: Path | None = None

    def resolve_module_name(self):
        target = self.get_config().get("_target_")
        name = super().resolve_module_name()
        mode = self.get_config().get("_mode_", "default")
        if not (isinstance(name, str) and name.startswith(MONAI_COMPONENTS) and mode == "default"):
            raise refusal(self.id, f"_target_ {target!r}, not one of MONAI's own components", self.folder)
        if not isinstance(pydoc.locate(name), type):
            raise refusal(self.id, f"_target_ {target!r}, not a class of MONAI's", self.folder)
        return name


class EngineTorch(types.ModuleType):
    """``torch`` for a trusted bundle's expressions: ``load`` and CUDA devices go to the engine's device."""

    def __init__(self, device: torch.device):
        super().__init__("torch")
        self._engine_device = device

    def __getattr__(self, name):
        return getattr(torch, name)

    def load(self, *args, **kwargs):
        """As the bundle's authors wrote it (before torch 2.6, a full unpickling: DiNTS's architecture code
        holds numpy arrays): the user trusted this bundle's code, and its pickles are code. The model's
        weights are never read here (``loading.py`` reads them with ``weights_only=True``)."""
        kwargs["map_location"] = self._engine_device
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    def device(self, *args, **kwargs):
        asked = torch.device(*args, **kwargs)
        return self._engine_device if asked.type != self._engine_device.type else asked


class TrustedExpression(ConfigExpression):
    """MONAI's own expression, with ``import torch`` giving the engine's ``torch``."""

    def _parse_import_string(self, import_string: str):
        if import_string.strip() == "import torch" and "torch" in self.globals:
            return self.globals["torch"]
        return super()._parse_import_string(import_string)


class BundleConfigParser(ConfigParser):
    """``ConfigParser`` whose expressions and components follow the trust mode."""

    def __init__(self, folder: Path, trust_code: bool, device: torch.device):
        super().__init__(globals={"torch": EngineTorch(device)} if trust_code else False)
        self.folder, self.trust_code = folder, trust_code
        self.expression_class = TrustedExpression if trust_code else DataExpression
        self.component_class = ConfigComponent if trust_code else MonaiComponent

    def _do_parse(self, config, id: str = "") -> None:
        if isinstance(config, (dict, list)):
            for _, sub_id, value in self.ref_resolver.iter_subconfigs(id=id, config=config):
                self._do_parse(config=value, id=sub_id)
        if ConfigComponent.is_instantiable(config):
            item = self.component_class(config=config, id=id, locator=self.locator)
        elif ConfigExpression.is_expression(config):
            item = self.expression_class(config=config, id=id, globals=self.globals)
        else:
            self.ref_resolver.add_item(ConfigItem(config=config, id=id))
            return
        item.folder = self.folder
        self.ref_resolver.add_item(item)


def bundle_relative_macros(config, folder: Path):
    """``%configs/x.json#key`` names a file relative to the bundle (MONAI would read it from the cwd)."""
    if isinstance(config, dict):
        return {key: bundle_relative_macros(value, folder) for key, value in config.items()}
    if isinstance(config, list):
        return [bundle_relative_macros(value, folder) for value in config]
    if isinstance(config, str) and config.startswith("%") and not config.startswith("%#"):
        path, _, key = config[1:].partition("#")
        if path and not Path(path).is_absolute() and (folder / path).is_file():
            return f"%{folder / path}#{key}" if key else f"%{folder / path}"
    return config


def read_bundle_config(folder: Path, trust_code: bool = False, device: str | torch.device = "cpu"):
    """The bundle's inference config, parsed as MONAI parses it, in the given trust mode."""
    path = config_path(folder)
    if path is None:
        raise CheckpointError("not a MONAI bundle (configs/inference.json or .yaml missing)", folder)
    parser = BundleConfigParser(folder, trust_code, torch.device(device))
    try:
        parser.read_config(str(path))
        parser.set(bundle_relative_macros(parser.get(), folder))
    except Exception as error:  # JSON/YAML syntax errors and unreadable files
        raise CheckpointError(f"unreadable bundle config ({root_message(error)})", path) from error
    parser["bundle_root"] = str(folder)
    parser["device"] = str(torch.device(device))
    return parser


def root_message(error: BaseException) -> str:
    """The innermost cause of an error, as its own type and message (MONAI wraps errors in RuntimeError)."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return f"{type(error).__name__}: {error}"


def code_refusal(error: BaseException) -> BundleCodeRefused | None:
    """The refusal anywhere in an error's chain, so it reaches the user unwrapped."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BundleCodeRefused):
            return error
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return None


@contextlib.contextmanager
def bundle_on_import_path(folder: Path, trust_code: bool) -> Iterator[None]:
    """The bundle's folder first on ``sys.path`` while its network is built, so ``scripts.…`` is its own
    (a ``scripts`` package another bundle imported before is forgotten first)."""
    if not trust_code:
        yield
        return
    root = str(folder.resolve())
    for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not origin.startswith(root + "/"):
            del sys.modules[name]
    sys.path.insert(0, root)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root)
