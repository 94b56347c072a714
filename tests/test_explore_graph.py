"""fpgagen explore's joint integer program on a branched network (tests/support/explore_tiny.py's BranchedNet: a
three-way fork, a Concat read straight by a conv, an upsample, a residual Add on one shared quantizer), in this
process (no Ray): the shared quantizer is one variable, each unit's width dependence is read off the lowering, and
the program's figures for its choice are the layers' own within the board and loss budgets."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from explore_tiny import layers_own_figures, price

from fpgagen.errors import FpgagenError

TINY = str(Path(__file__).parent / "support" / "explore_tiny.py")
SPECS = {"factory": f"{TINY}:branched_factory", "evaluate": f"{TINY}:evaluate", "finetune": None,
         "calibration": f"{TINY}:calibration"}
W, A = [2, 4], [2, 4]


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    return price(SPECS, W, A, 5, 4, (1, 3, 8, 8), tmp_path_factory.mktemp("graph_ir"))


def test_shared_quantizer_is_one_variable():
    from fpgagen.explore import contract

    c = contract.resolve(SPECS["factory"])
    shape = contract.discover(c, contract.calibration_data(c))
    assert shape.weight_layers == ["c0", "c1", "c2", "c3", "c4"]
    assert shape.act_quants == ["r0", "r1", "r2", "q4"] and shape.shared == {"r0": ["r3"]}
    assert shape.excluded == ["input_quant", "out"]


def test_dependence_follows_the_streams(priced):
    """Which widths each unit's cost moves with, as the probe lowerings show it: a fork, a maxpool and an upsample
    pass their input's codes on; the Concat sees both branches; the conv reading it sees both grids, its weights and
    its output (r3, which is r0's quantizer); the Add sees its inputs (r0) and the quantizer after it (q4)."""
    units, depends, tables = priced
    by_node = {n: d for u, d in zip(units, depends, strict=True) for n in u.names}
    w, a = (lambda i: ("w", i)), (lambda k: ("a", k))
    assert by_node["conv_0"] == [w(0), a(0)]
    assert by_node["conv_1"] == [w(1), a(0), a(1)]
    assert by_node["conv_2"] == [w(2), a(0), a(2)]
    assert by_node["conv_3"] == [w(3), a(0), a(1), a(2)]
    assert by_node["conv_4"] == [w(4), a(3)]
    assert by_node["concat_0"] == [a(1), a(2)] and by_node["add_0"] == [a(0), a(3)]
    assert by_node["maxpool_0"] == [a(0)] and by_node["resize_0"] == [a(2)]
    assert len(tables) == 2 * 2 ** 3  # weights one colour; r0, r1, r2 meet in conv_3, q4 shares r1's colour
    for u, d in enumerate(depends):  # every unit sees every combination of its widths
        seen = {tuple((wb if v[0] == "w" else ab)[v[1]] for v in d) for wb, ab in tables}
        assert seen == set(itertools.product(*[W if v[0] == "w" else A for v in d])), units[u].names


def test_program_figures_are_the_layers_own(priced, tmp_path):
    """The program's choices (fastest at any loss, within a loss budget, within a tight LUT budget) applied to the IR
    lowered at the chosen widths: the layers' own resources and cycles are what the program counted, and the
    budgets hold."""
    from fpgagen.board import load_board
    from fpgagen.budget import caps_of
    from fpgagen.explore import program, tasks
    from fpgagen.ir import Network

    units, depends, tables = priced
    board = load_board("pynq_z2")
    sens_w = [{2: 1.0, 4: 0.0} for _ in range(5)]
    sens_a = [{2: 0.5, 4: 0.0} for _ in range(4)]

    def check(choice, caps, loss):
        assert choice is not None
        assert all(choice.resources[r] <= caps[r] for r in caps), (choice.resources, caps)
        score = sum(s[b] for s, b in zip(sens_w, choice.weight_bits, strict=True)) + \
            sum(s[b] for s, b in zip(sens_a, choice.act_bits, strict=True))
        assert choice.score == score <= loss
        ir = tmp_path / f"ir-{len(list(tmp_path.iterdir()))}"
        tasks.lower_task(SPECS, choice.weight_bits, choice.act_bits, (1, 3, 8, 8), str(ir), tables=False)
        assert layers_own_figures(Network.load(ir), choice.attrs) == (choice.resources, choice.cycles)

    prog = program.joint_program(tables, units, depends, W, A, 5, 4, board, sens_w, sens_a)
    caps = caps_of(board)
    fastest = prog.solve()
    check(fastest, caps, float("inf"))
    widest = prog.solve(0.0)
    check(widest, caps, 0.0)
    assert (widest.weight_bits, widest.act_bits) == ([4] * 5, [4] * 4) and widest.cycles >= fastest.cycles
    mid = prog.solve(1.0)
    check(mid, caps, 1.0)
    assert fastest.cycles <= mid.cycles <= widest.cycles
    # LUT budgets below what the fastest design takes: each choice within its budget; the tighter one rules out
    # every design at the fastest's period (the least LUTs there is about 0.34 of the fastest's choice)
    slower = []
    for share in (0.6, 0.3):
        lut = fastest.resources["LUT"] * share + board.get("shell", {}).get("LUT", 0)
        tight = program.joint_program(tables, units, depends, W, A, 5, 4, board, sens_w, sens_a,
                                      ceilings={"LUT": lut / board["resources"]["LUT"]})
        choice = tight.solve()
        check(choice, tight.caps, float("inf"))
        assert choice.cycles >= fastest.cycles
        slower.append(choice.cycles > fastest.cycles)
    assert slower[-1]


def test_too_many_width_patterns_are_refused():
    from fpgagen.explore import program

    clique = [[("a", k) for k in range(6)]]  # six quantizers meeting in one unit, four widths each: 4^6 patterns
    with pytest.raises(FpgagenError, match="4096 lowerings") as exc:
        program.covering_configs(clique, [4], [2, 3, 4, 8], 1, 6, "my.py:make")
    assert exc.value.where == "my.py:make"
