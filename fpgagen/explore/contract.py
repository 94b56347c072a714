"""The explore contract: ``FACTORY`` (``module:function``, a file path or an importable module) takes
``weight_bits`` and ``act_bits`` keywords (each an int or a list) and returns a Brevitas model; ``--evaluate``
``(model) -> float`` (higher is better); ``--finetune`` ``(model) -> model`` (optional); ``--calibration``
``() -> tensor`` (the data the predictor runs; else the factory module's ``calibration``).

The lengths of the two lists are found by calling the factory with ints and tracing one forward pass: one entry
per QuantConv/QuantLinear in forward order, and one per activation quantizer in forward order, leaving out the
network's input quantizer (before the first weight layer) and its output quantizer (after the last one).

On a graph (forks, Concat, Add, Upsample): "forward order" is the order in which the modules first run. Modules
that share one act_quant proxy (``QuantReLU(act_quant=other.act_quant)``, as branches meeting in an Add on one
scale) are one quantizer with one entry, at its first call: streams that must share a scale share a width, and the
factory sets it once (on the shared proxy). Quantizers after the last weight layer to run are the output's and
stay as built; those of another output, reached earlier in the forward pass, are explored like any other."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FpgagenError

BIT_RANGE = (2, 16)  # weight and activation widths explore may set (1-bit needs a binary quantizer, not Int)
SHIPPED = {"face": "fpgagen.explore.face"}  # `fpgagen explore face`


@dataclass
class Contract:
    """What the user gave, resolved: the specs as typed (for the run folder's identity) and the callables."""

    factory_spec: str
    factory: Callable
    evaluate_spec: str
    evaluate: Callable
    finetune_spec: str | None
    finetune: Callable | None
    calibration_spec: str
    calibration: Callable
    baseline: dict | None = None  # {"weight_bits": [..], "act_bits": [..], "name": ..} the module names
    # the factory module's settings() when it defines one: what else decides its accuracy figures (sizes read from
    # the environment, say); part of the run folder's identity, so a resume never mixes fine-tunes of two settings
    settings: dict | None = None


def _split(spec: str, option: str) -> tuple[str, str]:
    module, sep, func = spec.rpartition(":")
    if not sep or not module or not func:
        raise FpgagenError(f"'{spec}' is not module:function", option,
                           "write e.g. my_model.py:make or my_package.models:make")
    return module, func


def load_module(module: str, option: str):
    """A file path (a .py file, relative or absolute) or an importable module name."""
    path = Path(module)
    if module.endswith(".py") or path.suffix == ".py" or "/" in module:
        if not path.is_file():
            raise FpgagenError(f"no such file '{module}'", option, "give the path of the .py file that defines it")
        name = f"fpgagen_explore_user_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            del sys.modules[name]
            raise FpgagenError(f"importing {module} raised {type(exc).__name__}: {_short(exc)}", option,
                               "fix the module so that it imports") from None
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise FpgagenError(f"no module named '{exc.name}'", option,
                           "give a .py file path or a module on PYTHONPATH") from None
    except Exception as exc:
        raise FpgagenError(f"importing {module} raised {type(exc).__name__}: {_short(exc)}", option,
                           "fix the module so that it imports") from None


def load_callable(spec: str, option: str) -> Callable:
    module, func = _split(spec, option)
    mod = load_module(module, option)
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise FpgagenError(f"{module} defines no function '{func}'", option,
                           f"define {func}() in {module} or name another function")
    return fn


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def resolve(factory: str, evaluate: str | None = None, finetune: str | None = None,
            calibration: str | None = None) -> Contract:
    """The callables of the contract. ``factory`` may be a shipped name (``face``): its module provides all four
    (``factory``, ``evaluate``, ``finetune``, ``calibration``) and the baseline (``BASELINE``)."""
    if factory in SHIPPED:
        module = SHIPPED[factory]
        factory = f"{module}:factory"
        evaluate = evaluate or f"{module}:evaluate"
        finetune = finetune or f"{module}:finetune"
        calibration = calibration or f"{module}:calibration"
    fac = load_callable(factory, "FACTORY")
    module = _split(factory, "FACTORY")[0]
    mod = load_module(module, "FACTORY")
    if evaluate is None:
        if not callable(getattr(mod, "evaluate", None)):
            raise FpgagenError("no --evaluate given and the factory module defines no evaluate()", "--evaluate",
                               "pass --evaluate module:function (model -> float, higher is better)")
        evaluate = f"{module}:evaluate"
    if calibration is None:
        if not callable(getattr(mod, "calibration", None)):
            raise FpgagenError("no --calibration given and the factory module defines no calibration()",
                               "--calibration", "pass --calibration module:function (-> a batch of model inputs)")
        calibration = f"{module}:calibration"
    baseline = getattr(mod, "BASELINE", None)
    settings = mod.settings() if callable(getattr(mod, "settings", None)) else None
    return Contract(factory, fac, evaluate, load_callable(evaluate, "--evaluate"), finetune,
                    load_callable(finetune, "--finetune") if finetune else None, calibration,
                    load_callable(calibration, "--calibration"), baseline if isinstance(baseline, dict) else None,
                    settings if isinstance(settings, dict) else None)


def make_model(contract: Contract, weight_bits, act_bits):
    """The factory's model, or an error naming the factory when it raises or returns no module."""
    import torch

    try:
        model = contract.factory(weight_bits=weight_bits, act_bits=act_bits)
    except FpgagenError:
        raise
    except Exception as exc:
        raise FpgagenError(f"the factory raised {type(exc).__name__}: {_short(exc)} (weight_bits={weight_bits}, "
                           f"act_bits={act_bits})", contract.factory_spec,
                           "make it build a Brevitas model for every int or list of bit widths it is given") from None
    if not isinstance(model, torch.nn.Module):
        raise FpgagenError(f"the factory returned {type(model).__name__}, not a torch module", contract.factory_spec,
                           "return the Brevitas model (an nn.Module)")
    return model.eval()


def calibration_data(contract: Contract):
    import torch

    try:
        x = contract.calibration()
    except Exception as exc:
        raise FpgagenError(f"the calibration function raised {type(exc).__name__}: {_short(exc)}",
                           contract.calibration_spec, "make it return a batch of model inputs (a tensor)") from None
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 1:
        raise FpgagenError("the calibration function returned no batch of inputs", contract.calibration_spec,
                           "return a float tensor (N, ...) of inputs the model takes")
    return x.float()


def evaluate_model(contract: Contract, model) -> float:
    """``evaluate(model)`` as a finite float, or an error naming the function."""
    try:
        value = contract.evaluate(model)
        value = float(value)
    except FpgagenError:
        raise
    except Exception as exc:
        raise FpgagenError(f"the evaluate function raised {type(exc).__name__}: {_short(exc)}",
                           contract.evaluate_spec, "make it return one float, higher is better") from None
    if not math.isfinite(value):
        raise FpgagenError(f"the evaluate function returned {value}", contract.evaluate_spec,
                           "return a finite float (higher is better); a NaN usually means the model diverged or "
                           "the data set is empty")
    return value


def finetune_model(contract: Contract, model):
    if contract.finetune is None:
        return model
    try:
        out = contract.finetune(model)
    except FpgagenError:
        raise
    except Exception as exc:
        raise FpgagenError(f"the finetune function raised {type(exc).__name__}: {_short(exc)}",
                           contract.finetune_spec, "make it return the fine-tuned model") from None
    import torch

    if not isinstance(out, torch.nn.Module):
        raise FpgagenError(f"the finetune function returned {type(out).__name__}, not a torch module",
                           contract.finetune_spec, "return the fine-tuned model")
    return out.eval()


# --- the trace ---------------------------------------------------------------------------------------------
@dataclass
class Shape:
    """What one forward pass shows: the weight layers and the explored activation quantizers, in forward order
    (module names), the quantizers left out, and each one's bit width as built. Modules that share one act_quant
    proxy are one quantizer (``shared``: the first one's name -> the others')."""

    weight_layers: list[str]
    act_quants: list[str]
    excluded: list[str]
    weight_bits: list[int]
    act_bits: list[int]
    shared: dict[str, list[str]] = field(default_factory=dict)  # an explored quantizer -> the others using it


def _is_weight_layer(module) -> bool:
    from brevitas.nn import QuantConv1d, QuantConv2d, QuantLinear

    return isinstance(module, QuantConv1d | QuantConv2d | QuantLinear)


def _is_act_quant(module) -> bool:
    from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector

    proxy = getattr(module, "act_quant", None)
    return isinstance(proxy, ActQuantProxyFromInjector) and proxy.is_quant_enabled and not _is_weight_layer(module)


def _weight_bits(module) -> int:
    return int(module.quant_weight().bit_width)


def trace(model, x) -> Shape:
    """Run ``x`` through ``model`` once, recording the order in which weight layers and activation quantizers
    fire (each counted at its first call)."""
    import torch

    order: list[tuple[str, str, object]] = []
    seen: set = set()
    shared: dict[int, list[str]] = {}  # act_quant proxy -> the modules that use it
    hooks = []
    for name, module in model.named_modules():
        kind = "w" if _is_weight_layer(module) else "a" if _is_act_quant(module) else None
        if kind is None:
            continue
        # modules that share one act_quant proxy (one scale, e.g. both inputs of a residual add) are one quantizer:
        # one entry, at the first one's first call, so one width reaches all of them
        ident = name if kind == "w" else id(module.act_quant)
        if kind == "a":
            shared.setdefault(ident, []).append(name)

        def hook(mod, inp, out, name=name, kind=kind, ident=ident):
            if ident not in seen:
                seen.add(ident)
                bits = _weight_bits(mod) if kind == "w" else int(getattr(out, "bit_width", mod.act_quant.bit_width()))
                order.append((name, kind, bits, ident))
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    weights = [i for i, (_, k, _, _) in enumerate(order) if k == "w"]
    if not weights:
        raise FpgagenError("the factory's network has no QuantConv or QuantLinear layer", "FACTORY",
                           "return a Brevitas network (brevitas.nn QuantConv2d / QuantLinear layers)")
    first, last = weights[0], weights[-1]
    acts = [i for i, (_, k, _, _) in enumerate(order) if k == "a" and first < i < last]
    excluded = [order[i][0] for i, (_, k, _, _) in enumerate(order) if k == "a" and not first < i < last]
    tied = {order[i][0]: shared[order[i][3]][1:] for i in acts if len(shared[order[i][3]]) > 1}
    return Shape([order[i][0] for i in weights], [order[i][0] for i in acts], excluded,
                 [int(order[i][2]) for i in weights], [int(order[i][2]) for i in acts], tied)


def discover(contract: Contract, x, probe_bits: tuple[int, int] = (4, 4)) -> Shape:
    """The lengths of ``weight_bits`` and ``act_bits``: call the factory with ints and trace one forward pass.
    The factory is then called with lists of the traced length (two different widths where the grid allows), and
    the traced widths must be those asked for: a factory that ignores lists would make every point the same."""
    model = make_model(contract, probe_bits[0], probe_bits[1])
    shape = trace(model, x)
    wb = [probe_bits[0] + (i % 2) for i in range(len(shape.weight_layers))]
    ab = [probe_bits[1] + (i % 2) for i in range(len(shape.act_quants))]
    got = trace(make_model(contract, wb, ab), x)
    if got.weight_bits != wb or got.act_bits != ab:
        raise FpgagenError(f"the factory does not apply per-layer bit widths: asked weight_bits={wb}, "
                           f"act_bits={ab}, the network runs at weight_bits={got.weight_bits}, "
                           f"act_bits={got.act_bits}", contract.factory_spec,
                           f"take lists of {len(wb)} weight widths (QuantConv/QuantLinear in forward order) and "
                           f"{len(ab)} activation widths (activation quantizers between the first and the last "
                           "weight layer, in forward order)")
    return shape


def check_grid(values: list[int], option: str) -> list[int]:
    lo, hi = BIT_RANGE
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi]
    if bad or not values:
        raise FpgagenError(f"bit widths {bad or values} out of range", option,
                           f"give widths from {lo} to {hi}, e.g. 2,3,4,8")
    return sorted(set(values))


def check_point(weight_bits: list[int], act_bits: list[int], shape: Shape, where: str) -> None:
    """A named point (the baseline): the traced lengths and widths in range."""
    if len(weight_bits) != len(shape.weight_layers) or len(act_bits) != len(shape.act_quants):
        raise FpgagenError(f"the point has {len(weight_bits)} weight and {len(act_bits)} activation widths, the "
                           f"network {len(shape.weight_layers)} and {len(shape.act_quants)}", where,
                           "give one width per weight layer and per explored activation quantizer")
    check_grid(list(weight_bits), where)
    check_grid(list(act_bits), where)
