"""A `peft` that is peftlab: a name-mapping import shim for running PEFT's own test suite against peftlab.

`install()` puts a finder first on `sys.meta_path` that answers every `import peft` / `import peft.x.y` with a shim
module. Attribute access on a shim module (`from peft import LoraConfig`, `from peft.tuners.lora import LoraLayer`,
`peft.tuners.lora.layer.Linear`) returns peftlab's object of the same role. The shim only maps names; it implements
no PEFT behaviour. The single exception is ENVIRONMENT_PROBES below: facts about this machine / peftlab's optional
integrations that PEFT's tests ask at collection time (`torch_device = infer_device()` in a class body), where a
loud failure would stop a whole test file from being collected.

A PEFT name peftlab lacks maps to a placeholder class. Importing it works (so one missing name in a module-level
`from peft import (...)` does not stop the whole file), but the first use (call, instantiation, attribute access)
raises `NotInPeftlab` (an ImportError) naming it and saying "not in peftlab", with the cause in brackets:
  [not implemented in peftlab]  a public PEFT name (exported by `peft/__init__.py` or a tuner package `__init__`)
  [PEFT-internal name]          anything else (utils, mapping tables, import_utils, private helpers, variants)
`isinstance(x, Placeholder)` is False: nothing in peftlab is an instance of a class peftlab does not have.

Which PEFT names exist and which are public is read (with `ast`, never imported) from PEFT's source: the folder in
$PEFT_COMPAT_SRC (`.../src/peft`), else the installed `peft` package's folder.
"""
import ast, importlib, importlib.abc, importlib.machinery, importlib.util, os, sys, types
from pathlib import Path

# ---------------------------------------------------------------------------------------------------------------
# The mapping: PEFT name -> peftlab object. Lookup order for name N asked of PEFT module M:
#   1. RENAMES[N]                     (same role, different name or home in peftlab)
#   2. M is under peft.tuners.<t>: the same name in TUNER_MODULES[t] (peftlab's modules for that method)
#   3. the same name in GENERAL_MODULES (peftlab's top level and its general modules)
#   4. N is a submodule of M in PEFT: the shim module for it
#   5. ENVIRONMENT_PROBES[N]
#   6. a placeholder that fails loudly on first use
# ---------------------------------------------------------------------------------------------------------------
TUNER_MODULES = {
    "lora": ["peftlab.lora", "peftlab.dora", "peftlab.lora_merge", "peftlab.lora_init", "peftlab.loftq"],
    "ia3": ["peftlab.ia3"],
    "adalora": ["peftlab.adalora"],
    "loha": ["peftlab.lycoris"],
    "lokr": ["peftlab.lycoris"],
    "vera": ["peftlab.vera"],
    "prompt_tuning": ["peftlab.prompts"],
    "prefix_tuning": ["peftlab.prompts"],
    "p_tuning": ["peftlab.prompts"],
    "multitask_prompt_tuning": ["peftlab.prompts"],
}
GENERAL_MODULES = ["peftlab", "peftlab.core", "peftlab.model", "peftlab.io"]
RENAMES = {
    "BaseTunerLayer": "peftlab.core:AdapterLayer",
    "_get_submodules": "peftlab.core:get_submodules",
    "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING": "peftlab.core:LORA_TARGET_MODULES",
    "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING": "peftlab.ia3:IA3_TARGET_MODULES",
    "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING": "peftlab.ia3:IA3_FEEDFORWARD_MODULES",
    "TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING": "peftlab.adalora:ADALORA_TARGET_MODULES",
    "TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING": "peftlab.vera:VERA_TARGET_MODULES",
    "__version__": "peftlab:__version__",
}


def _is_available_false(name):
    def probe(*args, **kwargs): return False
    probe.__name__ = name
    probe.__doc__ = f"peft_compat probe: peftlab has no {name[3:-10]} integration, so PEFT's tests for it skip."
    return probe


def _transformers_ge(v):
    def probe():
        import transformers
        from packaging import version
        return version.parse(transformers.__version__) >= version.parse(v)
    return probe


# Facts about this environment, not PEFT behaviour (see module docstring).
ENVIRONMENT_PROBES = {
    "infer_device": lambda: "cpu",   # this compatibility run is CPU-only; CUDA tests skip via their own markers
    "is_transformers_ge_v5": _transformers_ge("5.0.0"),
    "is_transformers_ge_v5_1_0": _transformers_ge("5.1.0"),
    "is_transformers_ge_v5_6_0": _transformers_ge("5.6.0"),
}
AVAILABILITY_PROBE_PREFIX, AVAILABILITY_PROBE_SUFFIX = "is_", "_available"   # in peft.import_utils: -> False

NOT_IN_PEFTLAB = "not in peftlab"
CAUSE_PUBLIC, CAUSE_INTERNAL = "not implemented in peftlab", "PEFT-internal name"


class NotInPeftlab(ImportError):
    "A PEFT name peftlab has no counterpart for was used."


class NotInPeftlabAttribute(AttributeError):
    "An attribute of a PEFT name peftlab has no counterpart for was used (an AttributeError, so `hasattr` is False)."


# While pytest collects (conftest sets this), calling a placeholder -- `KasaConfig()` inside a module-level list of
# test cases -- returns a Deferred that fails on first use instead, so one missing name cannot stop a whole file.
DEFER_CALLS = False


# ---------------------------------------------------------------------------------------------------------------
# PEFT's names, read from its source
# ---------------------------------------------------------------------------------------------------------------
def peft_source_dir():
    d = os.environ.get("PEFT_COMPAT_SRC")
    if d: return Path(d)
    spec = importlib.machinery.PathFinder.find_spec("peft")   # the installed oracle, located but not imported
    if spec is None or not spec.origin: raise RuntimeError("peft_compat: set PEFT_COMPAT_SRC to PEFT's src/peft")
    return Path(spec.origin).parent


_SRC = None
_NAMES = {}


def _src():
    global _SRC
    if _SRC is None: _SRC = peft_source_dir()
    return _SRC


def _module_file(modname):
    "PEFT's file for `peft.a.b`: (path, is_package) or None."
    rel = modname.split(".")[1:]
    base = _src().joinpath(*rel) if rel else _src()
    if (base / "__init__.py").exists(): return base / "__init__.py", True
    if base.with_suffix(".py").exists(): return base.with_suffix(".py"), False
    return None


def peft_names(modname):
    "The names PEFT's module `modname` defines or imports at top level (read with ast)."
    if modname not in _NAMES:
        names, f = set(), _module_file(modname)
        if f:
            for node in ast.walk(ast.parse(f[0].read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names.update((a.asname or a.name).split(".")[0] for a in node.names)
                elif isinstance(node, ast.Assign):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name): names.add(node.target.id)
        _NAMES[modname] = names
    return _NAMES[modname]


_PUBLIC = None


def peft_public_names():
    "PEFT's public API: what `peft/__init__.py`, `peft/tuners/__init__.py` and each tuner package export."
    global _PUBLIC
    if _PUBLIC is None:
        pub = set(peft_names("peft")) | set(peft_names("peft.tuners"))
        for d in (_src() / "tuners").iterdir():
            if (d / "__init__.py").exists(): pub |= peft_names(f"peft.tuners.{d.name}")
        _PUBLIC = {n for n in pub if not n.startswith("_")}
    return _PUBLIC


def cause_of(name):
    return CAUSE_PUBLIC if name in peft_public_names() else CAUSE_INTERNAL


# ---------------------------------------------------------------------------------------------------------------
# Placeholders for names peftlab lacks
# ---------------------------------------------------------------------------------------------------------------
def _message(qualname, cause, how): return f"{qualname} is {NOT_IN_PEFTLAB} [{cause}] ({how})"


class Deferred:
    "What calling a placeholder during collection returns: every use raises NotInPeftlab."
    __slots__ = ("_cls",)
    def __init__(self, cls): object.__setattr__(self, "_cls", cls)
    def _fail(self, how):
        c = object.__getattribute__(self, "_cls")
        raise NotInPeftlab(_message(c._peft_qualname, c._cause, f"instance made at import time, {how}"),
                           name=c._peft_name)
    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"): raise AttributeError(attr)
        c = object.__getattribute__(self, "_cls")
        raise NotInPeftlabAttribute(_message(c._peft_qualname, c._cause, f"attribute {attr!r} of an instance used"))
    def __setattr__(self, k, v): self._fail(f"attribute {k!r} set")
    def __call__(self, *a, **k): self._fail("called")
    def __iter__(self): self._fail("iterated")
    def __getitem__(self, key): self._fail("indexed")
    def __repr__(self):
        c = object.__getattribute__(self, "_cls")
        return f"<instance of {c._peft_qualname}: {NOT_IN_PEFTLAB} [{c._cause}]>"


class _MissingMeta(type):
    def _fail(cls, how):
        raise NotInPeftlab(_message(cls._peft_qualname, cls._cause, how), name=cls._peft_name)

    def __call__(cls, *args, **kwargs):
        if DEFER_CALLS: return Deferred(cls)
        cls._fail("called")
    def __getattr__(cls, attr):
        if attr.startswith("__") and attr.endswith("__"): raise AttributeError(attr)
        raise NotInPeftlabAttribute(_message(cls._peft_qualname, cls._cause, f"attribute {attr!r} used"))
    def __instancecheck__(cls, obj): return False
    def __subclasscheck__(cls, sub): return sub is cls
    def __repr__(cls): return f"<{cls._peft_qualname}: {NOT_IN_PEFTLAB} [{cls._cause}]>"
    def __iter__(cls): cls._fail("iterated")
    def __getitem__(cls, key): cls._fail("indexed")
    def __contains__(cls, key): cls._fail("membership-tested")
    def __len__(cls): cls._fail("len() taken")


_PLACEHOLDERS = {}


def placeholder(modname, name):
    key = (modname, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = _MissingMeta(name, (), {"_peft_qualname": f"{modname}.{name}", "_peft_name": name,
                                                     "_cause": cause_of(name), "__module__": modname})
    return _PLACEHOLDERS[key]


# ---------------------------------------------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------------------------------------------
_MISSING = object()


def _from(modname, attr):
    try: mod = importlib.import_module(modname)
    except ImportError: return _MISSING
    if attr not in set(getattr(mod, "__all__", ())) | {"__version__"}: return _MISSING
    return getattr(mod, attr, _MISSING)


def resolve(modname, name):
    "peftlab's object for PEFT's `modname.name`; a placeholder if peftlab has none."
    if (modname, name) in FORWARDED:
        mod, attr = FORWARDED[modname, name]
        return getattr(importlib.import_module(mod), attr)
    if name in RENAMES:
        mod, attr = RENAMES[name].split(":")
        return getattr(importlib.import_module(mod), attr)
    parts = modname.split(".")
    if len(parts) >= 3 and parts[1] == "tuners":
        for m in TUNER_MODULES.get(parts[2], ()):
            obj = _from(m, name)
            if obj is not _MISSING: return obj
    for m in GENERAL_MODULES:
        obj = _from(m, name)
        if obj is not _MISSING: return obj
    if _module_file(f"{modname}.{name}"): return importlib.import_module(f"{modname}.{name}")
    if name in ENVIRONMENT_PROBES: return ENVIRONMENT_PROBES[name]
    if (modname == "peft.import_utils" and name.startswith(AVAILABILITY_PROBE_PREFIX)
            and name.endswith(AVAILABILITY_PROBE_SUFFIX)): return _is_available_false(name)
    return placeholder(modname, name)


# PEFT's tests monkeypatch these PEFT names (a dev version, a failing commit lookup). peftlab reads the names it has
# for them at call time, so setting one on the shim module sets peftlab's (and monkeypatch's undo sets it back).
FORWARDED = {("peft.config", "__version__"): ("peftlab.core", "PEFT_FORMAT_VERSION"),
             ("peft.config", "_get_commit_hash"): ("peftlab.core", "_get_commit_hash")}


class ShimModule(types.ModuleType):
    def __setattr__(self, name, value):
        fwd = FORWARDED.get((self.__name__, name))
        if fwd: setattr(importlib.import_module(fwd[0]), fwd[1], value)
        super().__setattr__(name, value)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__") and name != "__version__": raise AttributeError(name)
        obj = resolve(self.__name__, name)
        setattr(self, name, obj)   # cache: the same object on every access
        return obj

    def __dir__(self): return sorted(peft_names(self.__name__))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec): return ShimModule(spec.name)
    def exec_module(self, module):
        module.__file__ = f"<peft_compat shim for {module.__name__}>"
        module.__doc__ = f"peft_compat: PEFT's {module.__name__}, answered with peftlab's objects."


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "peft" and not fullname.startswith("peft."): return None
        f = _module_file(fullname)
        if f is None: return None   # not a PEFT module either: the normal ModuleNotFoundError
        spec = importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=f[1])
        if f[1]: spec.submodule_search_locations = []
        return spec


_FINDER = _Finder()


def install():
    "Make `import peft` give peftlab. Must run before anything imports the real `peft`."
    if any(k == "peft" or k.startswith("peft.") for k in sys.modules if not isinstance(sys.modules[k], ShimModule)):
        raise RuntimeError("peft_compat: the real peft is already imported; install the shim first")
    if _FINDER not in sys.meta_path: sys.meta_path.insert(0, _FINDER)
    return _FINDER
