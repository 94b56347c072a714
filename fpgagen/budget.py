"""The board budget, in one place: utilization ceilings (defaults, board.yaml, ``--ceiling``), the caps the
optimizer plans within (ceiling x device - platform shell), and the check every folded design passes
(``check_budget``: every kernel, every FIFO and the shell against the ceilings, naming what does not fit)."""

from __future__ import annotations

from . import fifo
from .errors import FpgagenError
from .ir import Network
from .ir.layers import RESOURCES, add_resources

DEFAULT_CEILINGS = {"LUT": 0.80, "FF": 0.80, "BRAM18": 0.90, "DSP": 0.90, "LUTRAM": 0.80}


def ceilings_of(board: dict, ceilings: dict | None = None) -> dict[str, float]:
    out = {**DEFAULT_CEILINGS, **board.get("ceilings", {}), **(ceilings or {})}
    for key, value in out.items():
        if key not in RESOURCES or not isinstance(value, int | float) or not 0 < float(value) <= 1:
            raise FpgagenError(f"bad utilization ceiling {key}={value}", "--ceiling",
                               f"use fractions in (0, 1] for {', '.join(RESOURCES)}, e.g. LUT=0.8")
    return {k: float(v) for k, v in out.items()}


def caps_of(board: dict, ceilings: dict | None = None) -> dict[str, float]:
    """What the accelerator may use: ceiling * device resource - the platform shell (DMA, interconnect)."""
    ceil, shell = ceilings_of(board, ceilings), board.get("shell", {})
    caps = {r: ceil[r] * board["resources"][r] - shell.get(r, 0) for r in RESOURCES}
    for r in RESOURCES:
        if caps[r] < 0:  # the ceiling leaves less than the platform around the accelerator needs
            least = shell.get(r, 0) / board["resources"][r]
            raise FpgagenError(f"the {r} ceiling {ceil[r]:g} allows {ceil[r] * board['resources'][r]:,.0f} {r}, less "
                               f"than the platform shell alone takes ({shell.get(r, 0):,}: DMA, interconnect)",
                               "--ceiling (or the board's ceilings)",
                               f"raise it above {least:.3f}, e.g. {r}=0.8")
    return caps


def usage(net: Network, board: dict) -> dict[str, int]:
    """Estimated totals: every kernel, every FIFO, and the board's platform shell."""
    return add_resources(*(lay.resources() for lay in net.layers), fifo.fifos_resources(net), board.get("shell", {}))


def check_budget(net: Network, board: dict, ceilings: dict | None = None) -> dict[str, int]:
    """Raise FpgagenError if the folded network exceeds the board budget, naming resources, numbers and layers."""
    total, ceil = usage(net, board), ceilings_of(board, ceilings)
    over = []
    parts = [(lay.name, lay.resources()) for lay in net.layers]
    # every stream's FIFO too, named by its producer (a folding file may set a layer's fifo_depth)
    parts += [(f"{e.src}'s output FIFO (fifo_depth {e.depth:,})",
               fifo.fifo_resources(e.depth, fifo.edge_width(net, e), e.storage))
              for e in net.stream_edges() if e.src != "input"]
    for r in RESOURCES:
        cap = ceil[r] * board["resources"][r]
        if total[r] > cap:
            top = sorted(parts, key=lambda part: -part[1][r])[:3]
            over.append(f"{r} {total[r]:,} > {cap:,.0f} ({ceil[r]:.0%} of {board['resources'][r]:,}; largest: "
                        f"{', '.join(f'{name} {res[r]:,}' for name, res in top)})")
    if over:
        raise FpgagenError(f"the folded network does not fit {board['name']}: " + "; ".join(over),
                           "folding", "fold more (smaller PE/SIMD), lower a fifo_depth, change memory styles, or raise "
                           "--ceiling")
    return total
