"""Docstrings do not drift: every name a docstring in fpgagen/ cites as code (``name``, ``name()``, ``a.b.name``)
exists. A name exists if fpgagen defines it (a module, class, function, parameter, attribute, variable or string
key), a template defines it (a Jinja macro), Python does (a builtin or keyword), or it is one of the few other
libraries' names below, which are looked up in that library. A one-letter name or one with a one-letter subscript
(``l``, ``u_k``) is a math symbol, not code."""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import keyword
import re
from pathlib import Path

import fpgagen

PACKAGE = Path(fpgagen.__file__).resolve().parent
TEMPLATES = PACKAGE.parent / "templates"
CITED = re.compile(r"``([A-Za-z_][\w.]*)(?:\(\))?``")
MATH = re.compile(r"[A-Za-z]|[A-Za-z]+_[A-Za-z0-9]")
# Other libraries' names the docstrings cite bare: name -> the module that has it (checked where installed)
EXTERNAL = {"flock": "fcntl", "allocate": "pynq", "Conv2d": "torch.nn", "BatchNorm2d": "torch.nn",
            "ReLU": "torch.nn", "Hardtanh": "torch.nn", "lfw_subset": "skimage.data",
            "sendchannel": "pynq.lib.dma", "recvchannel": "pynq.lib.dma"}


@functools.cache
def parsed() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}


@functools.cache
def defined_in_fpgagen() -> set[str]:
    names: set[str] = set()
    for path, tree in parsed().items():
        names.add(path.stem)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                names |= {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
                          if a is not None}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).rpartition(".")[2])
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)  # a dict key, a JSON field, an attribute read by name
    for template in TEMPLATES.rglob("*.j2"):
        names |= set(re.findall(r"{%-?\s*macro\s+(\w+)", template.read_text()))
    for header in TEMPLATES.rglob("*.h"):  # the kernels' loop labels, which the cycle models cite
        names |= set(re.findall(r"^\s*(\w+):\s*$", header.read_text(), re.M))
    return names


def citations() -> list[tuple[str, str]]:
    """(where, name) of every name cited in a docstring of fpgagen/."""
    out = []
    for path, tree in parsed().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False) or ""
                where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'name', 'module')}"
                out += [(where, m.group(1)) for m in CITED.finditer(doc)]
    return out


def exists_elsewhere(name: str) -> bool:
    if keyword.iskeyword(name) or hasattr(builtins, name) or MATH.fullmatch(name):
        return True
    head, _, rest = name.partition(".")
    head = {"np": "numpy"}.get(head, head)
    if rest:  # a dotted name of another library: its module imports and has the attribute
        try:
            obj = importlib.import_module(head)
        except ImportError:
            return False
        for part in rest.split("."):
            if not hasattr(obj, part):
                try:
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                except (ImportError, AttributeError):
                    return False
            else:
                obj = getattr(obj, part)
        return True
    return False


def test_every_cited_name_exists():
    defined = defined_in_fpgagen()
    missing = [(where, name) for where, name in citations()
               if name.rpartition(".")[2] not in defined and name not in EXTERNAL and not exists_elsewhere(name)]
    assert missing == []


def test_the_external_names_exist_and_are_cited():
    cited = {name for _, name in citations()}
    assert set(EXTERNAL) <= cited, set(EXTERNAL) - cited
    for name, module in EXTERNAL.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pynq lives on the board only
            continue
        assert hasattr(mod, name), f"{module}.{name}"


def test_the_check_finds_a_drifted_name():
    assert "simulate_graph" not in defined_in_fpgagen() and not exists_elsewhere("simulate_graph")
    assert CITED.findall("see ``fifo.simulate()`` and ``u_k``") == ["fifo.simulate", "u_k"]
