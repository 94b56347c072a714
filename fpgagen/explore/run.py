"""The explore driver: contract -> sensitivities -> cost tables -> fit fine-tunes -> joint program sweep ->
verification (fine-tune, evaluate, build, C-sim) -> ``pareto.json`` / ``pareto.md`` / ``pareto.png``.

Every unit of work is a Ray task with its CPU share declared (``ray.init()`` locally with ``workers`` CPUs by
default, or joining ``address``). Each finished task's result is written at once (atomically) under
``OUT/tasks/``, so an interrupted explore resumes without redoing it; ``OUT/explore.json`` records what the
explore is, and a run folder from a different one is refused. A task that fails (an exception, a killed worker)
is retried once, then recorded with its reason."""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..builddir import write_atomic
from ..errors import FpgagenError
from ..ir.layers import add_resources
from . import contract as contract_mod
from . import tasks
from .predictor import Sensitivity, fit, quality

FORMAT = "fpgagen-explore-1"
# What the tasks compute: raised when it changes (2: the sensitivity leaves out each channel's mean shift, and the
# lowering tasks return each node's signature for the probes), so a run folder of an older explore is another one.
METHOD = 2
CPUS = {"sensitivity_task": 1, "lower_task": 1, "finetune_task": 1, "build_task": 1}  # each task's declared CPU share


@dataclass
class ExploreConfig:
    factory: str
    out: str
    evaluate: str | None = None
    finetune: str | None = None
    calibration: str | None = None
    weight_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 8])
    act_bits: list[int] = field(default_factory=lambda: [2, 3, 4])
    board: str = "pynq_z2"
    ceilings: dict | None = None
    verify: int = 3
    fit_points: int = 4
    budgets: int = 8
    workers: int = 2
    address: str | None = None
    seed: int = 0
    baseline: dict | bool | None = None  # {"name", "weight_bits", "act_bits"}; None: the module's BASELINE; False: none
    holdout_points: int = 0  # extra random fine-tunes, never fitted on: only for the predictor's quality
    time_limit: float = 60.0


# --- specs and identity ------------------------------------------------------------------------------------
def _absolute(spec: str | None) -> str | None:
    """A file-path spec made absolute (workers may start elsewhere); module specs unchanged."""
    if spec is None or ":" not in spec:
        return spec
    module, func = spec.rsplit(":", 1)
    if module.endswith(".py") or "/" in module:
        return f"{Path(module).resolve()}:{func}"
    return spec


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(spec: str | None) -> str | None:
    if spec is None or ":" not in spec:
        return None
    path = Path(spec.rsplit(":", 1)[0])
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def identity(cfg: ExploreConfig, specs: dict, settings: dict | None = None) -> dict:
    """What makes two explores the same one (workers, verify and held-out counts and budgets may change on a
    resume: they add work, and what is done stays valid). ``settings``: the factory module's own (its
    ``settings()``, e.g. the face detector's fine-tune and eval sizes)."""
    return {"method": METHOD, "specs": specs, "files": {k: _file_digest(v) for k, v in specs.items()},
            "settings": settings,
            "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits, "board": cfg.board, "ceilings": cfg.ceilings,
            "fit_points": cfg.fit_points, "seed": cfg.seed}


def open_run_folder(out: Path, ident: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "explore.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise FpgagenError("the run folder's explore.json is not an fpgagen explore record", str(path),
                               "pick another -o folder, or delete this one to start over")
        if saved.get("identity") != json.loads(json.dumps(ident)):
            diff = sorted(k for k in ident if saved.get("identity", {}).get(k) != json.loads(json.dumps(ident[k])))
            raise FpgagenError(f"the run folder holds a different explore (it differs in {', '.join(diff)})",
                               str(out), "pick another -o folder, run the same explore to resume it, or delete "
                               "the folder to start over")
        return
    if any(out.iterdir()):
        raise FpgagenError("the output folder is not empty and holds no explore", str(out),
                           "pick an empty or new -o folder")
    write_atomic(path, json.dumps({"format": FORMAT, "identity": ident}, indent=1))


# --- Ray ---------------------------------------------------------------------------------------------------
def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with fpgagen's error, when nothing listens at ``address`` (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    fix = "start the cluster ('ray start --head'), check host and port, or leave --address out for a local run"
    if not host or not port.isdigit():
        raise FpgagenError(f"'{address}' is not HOST:PORT or ray://HOST:PORT", "--address", fix)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise FpgagenError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})", "--address",
                           fix) from None


def start_ray(workers: int, address: str | None) -> tuple[bool, dict]:
    """Join ``address`` or start a local Ray with ``workers`` CPUs; reuse a session already running in this
    process (tests share one). Returns (whether this call started it, the engine record)."""
    import ray

    if ray.is_initialized():
        return False, {"name": "ray", "address": "local (existing session)",
                       "workers": int(ray.cluster_resources().get("CPU", workers))}
    if address:
        check_address(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except Exception as exc:
            raise FpgagenError(f"cannot join the Ray cluster at {address} ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:160]})", "--address",
                               "check the address and that the cluster runs the same Ray and Python") from None
        return True, {"name": "ray", "address": address, "workers": int(ray.cluster_resources().get("CPU", 0))}
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    return True, {"name": "ray", "address": "local", "workers": workers}


class Progress:
    """One line per finished task: points done of the phase's total, elapsed and an estimate of the time left."""

    def __init__(self, label: str, total: int, done: int, stream=sys.stderr):
        self.label, self.total, self.done, self.stream = label, total, done, stream
        self.t0, self.start = time.perf_counter(), done
        self.show()

    def step(self) -> None:
        self.done += 1
        self.show()

    def show(self) -> None:
        if not self.total:
            return
        elapsed = time.perf_counter() - self.t0
        ran = self.done - self.start
        left = (self.total - self.done) * elapsed / ran if ran else float("nan")
        width = 20
        fill = int(width * self.done / self.total)
        eta = f"{int(left) // 60}:{int(left) % 60:02d}" if math.isfinite(left) else "?"
        self.stream.write(f"[explore {self.label}] {self.done}/{self.total} [{'=' * fill}{' ' * (width - fill)}] "
                          f"{int(elapsed) // 60}:{int(elapsed) % 60:02d} elapsed, ~{eta} left\n")
        self.stream.flush()


def run_tasks(out: Path, label: str, jobs: list[tuple[str, str, dict]]) -> dict[str, dict]:
    """Run ``jobs`` [(task id, function name in ``tasks``, kwargs)] as Ray tasks; results of finished ones are read
    back from ``OUT/tasks/<id>.json`` (state bytes from ``OUT/models/<id>.pt``), the others run, and each is
    written as soon as it finishes. A user error in any task stops the explore with it."""
    import ray

    folder = out / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    todo = []
    for tid, fn, kwargs in jobs:
        path = folder / f"{tid}.json"
        if path.is_file():
            try:
                results[tid] = _read_result(out, tid)
                continue
            except (ValueError, OSError):
                pass  # a damaged record is redone
        todo.append((tid, fn, kwargs))
    bar = Progress(label, len(jobs), len(results))
    pending = {}
    for tid, fn, kwargs in todo:
        remote = ray.remote(num_cpus=CPUS[fn], max_retries=1, retry_exceptions=True)(getattr(tasks, fn))
        pending[remote.remote(**kwargs, threads=CPUS[fn])] = tid
    fatal = None
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            tid = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # failed twice (Ray retried once): recorded, not fatal
                cause = getattr(exc, "cause", None) or exc
                result = {"status": f"failed: {type(cause).__name__}: {' '.join(str(cause).split())[-200:]}"}
            if "fatal" in result:
                fatal = fatal or result
                continue
            _write_result(out, tid, result)
            results[tid] = result
            bar.step()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    if fatal:
        raise FpgagenError(fatal["what"], fatal["where"], fatal["fix"])
    return results


def _write_result(out: Path, tid: str, result: dict) -> None:
    state = result.pop("state", None)
    if state is not None:
        (out / "models").mkdir(exist_ok=True)
        write_atomic(out / "models" / f"{tid}.pt", state)
        result["state_file"] = f"models/{tid}.pt"
    write_atomic(out / "tasks" / f"{tid}.json", json.dumps(result, indent=1))
    if state is not None:
        result["state"] = state


def _read_result(out: Path, tid: str) -> dict:
    result = json.loads((out / "tasks" / f"{tid}.json").read_text())
    if "state_file" in result:
        result["state"] = (out / result["state_file"]).read_bytes()
    return result


# --- points ------------------------------------------------------------------------------------------------
def point_id(kind: str, wb: list[int], ab: list[int]) -> str:
    return f"{kind}-w{'_'.join(map(str, wb))}-a{'_'.join(map(str, ab))}"


def fit_configs(cfg: ExploreConfig, n_weight: int, n_act: int) -> list[tuple[list[int], list[int]]]:
    """The points fine-tuned to fit the predictor (the widest, the narrowest, then seeded random mixes), followed
    by ``holdout_points`` more random mixes that the fit never sees."""
    rng = random.Random(cfg.seed)
    points = [([max(cfg.weight_bits)] * n_weight, [max(cfg.act_bits)] * n_act),
              ([min(cfg.weight_bits)] * n_weight, [min(cfg.act_bits)] * n_act)][:max(cfg.fit_points, 0)]
    want = max(cfg.fit_points, 0) + max(cfg.holdout_points, 0)
    tries = 0
    while len(points) < want and tries < 1000:
        tries += 1
        p = ([rng.choice(cfg.weight_bits) for _ in range(n_weight)], [rng.choice(cfg.act_bits) for _ in range(n_act)])
        if p not in points:
            points.append(p)
    return points


def mark_pareto(points: list[dict]) -> None:
    """``pareto: true`` exactly for the points no other beats on both accuracy and FPS (at least as good on both,
    better on one); measured figures where a point has them, predicted otherwise; unbuilt failures excluded."""
    def figures(p):
        acc = p["accuracy_measured"] if p["accuracy_measured"] is not None else p["accuracy_predicted"]
        return acc, p["fps"]

    usable = [p for p in points if p["status"] in ("verified", "predicted") and None not in figures(p)]
    for p in points:
        p["pareto"] = False
    for p in usable:
        a, f = figures(p)
        p["pareto"] = not any((b >= a and g >= f) and (b > a or g > f) for b, g in map(figures, usable))


# --- the explore -------------------------------------------------------------------------------------------
def explore(cfg: ExploreConfig, log=lambda m: print(m, file=sys.stderr)) -> dict:
    from ..board import load_board
    from ..ir import Network
    from . import program as prog_mod

    t_start = time.perf_counter()
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise FpgagenError(f"--workers {cfg.workers}", "--workers", "give at least 1")
    w_grid = contract_mod.check_grid(cfg.weight_bits, "--weight-bits")
    a_grid = contract_mod.check_grid(cfg.act_bits, "--act-bits")
    cfg.weight_bits, cfg.act_bits = w_grid, a_grid
    board = load_board(cfg.board)
    if cfg.address:
        check_address(cfg.address)
    c = contract_mod.resolve(cfg.factory, cfg.evaluate, cfg.finetune, cfg.calibration)
    specs = {"factory": _absolute(c.factory_spec), "evaluate": _absolute(c.evaluate_spec),
             "finetune": _absolute(c.finetune_spec), "calibration": _absolute(c.calibration_spec)}
    out = Path(cfg.out)
    open_run_folder(out, identity(cfg, specs, c.settings))
    x = contract_mod.calibration_data(c)
    shape = contract_mod.discover(c, x, (min(w_grid), min(a_grid)))
    n_w, n_a = len(shape.weight_layers), len(shape.act_quants)
    log(f"[explore] {c.factory_spec}: {n_w} weight layers, {n_a} explored activation quantizers "
        f"({len(shape.excluded)} input/output quantizers kept as built)")
    baseline = None if cfg.baseline is False else (cfg.baseline or c.baseline)
    if baseline is not None:
        contract_mod.check_point(baseline["weight_bits"], baseline["act_bits"], shape, "baseline")
    probe = contract_mod.make_model(c, w_grid[0], a_grid[0])
    input_shape = tuple(getattr(probe, "input_shape", None) or (1, *x.shape[1:]))
    started, engine = start_ray(cfg.workers, cfg.address)
    timing: dict[str, float] = {}
    try:
        # 1. sensitivities, and the IR at the probe patterns (which variables each unit's cost depends on)
        t0 = time.perf_counter()
        widest = (max(w_grid), max(a_grid))
        jobs = [(f"sens-{kind}{i}", "sensitivity_task",
                 {"specs": specs, "kind": kind, "index": i, "grid": grid, "widest": widest, "shape": (n_w, n_a)})
                for kind, n, grid in (("w", n_w, w_grid), ("a", n_a, a_grid)) for i in range(n)]

        def lower_job(kind, wb, ab):
            tid = point_id(kind, wb, ab)
            return (tid, "lower_task", {"specs": specs, "weight_bits": wb, "act_bits": ab, "input_shape": input_shape,
                                        "out_dir": str((out / "ir" / tid).resolve()), "tables": kind == "ir"})

        base, probes = prog_mod.probe_configs(w_grid, a_grid, n_w, n_a)
        base_job = lower_job("ir", *base)  # a covering pattern too: its tables are priced once
        probe_jobs = {var: lower_job("probe", wb, ab) for var, (wb, ab) in probes.items()}
        res = run_tasks(out, "sensitivity", jobs + [base_job, *probe_jobs.values()])
        sens = Sensitivity([{int(b): v for b, v in res[f"sens-w{i}"]["sensitivity"].items()} for i in range(n_w)],
                           [{int(b): v for b, v in res[f"sens-a{k}"]["sensitivity"].items()} for k in range(n_a)])
        timing["sensitivity_s"] = time.perf_counter() - t0
        units = prog_mod.units_of(Network.load(Path(res[base_job[0]]["ir"])))
        depends = prog_mod.dependence(units, res[base_job[0]]["signature"],
                                      {var: res[job[0]]["signature"] for var, job in probe_jobs.items()},
                                      c.factory_spec)
        # 2. cost tables: the IR at width patterns that give every unit every combination of its widths
        t0 = time.perf_counter()
        configs = prog_mod.covering_configs(depends, w_grid, a_grid, n_w, n_a, c.factory_spec)
        jobs = [lower_job("ir", wb, ab) for wb, ab in configs]
        res = run_tasks(out, "lower", jobs)
        if any(res[tid]["units"] != [u.names for u in units] for tid, _, _ in jobs):
            raise FpgagenError("the network lowers to different layers at different bit widths", c.factory_spec,
                               "keep the topology independent of the bit widths")
        tables = {(tuple(wb), tuple(ab)): prog_mod.options_from_json(res[tid]["options"])
                  for (wb, ab), (tid, _, _) in zip(configs, jobs, strict=True)}
        timing["lower_s"] = time.perf_counter() - t0
        # 3. fit fine-tunes
        t0 = time.perf_counter()
        fits = fit_configs(cfg, n_w, n_a)
        all_ft = {point_id("ft", wb, ab): (wb, ab) for wb, ab in fits}
        ft_jobs = {point_id("ft", wb, ab): (wb, ab) for wb, ab in fits[:max(cfg.fit_points, 0)]}
        res = run_tasks(out, "finetune", [(tid, "finetune_task", {"specs": specs, "weight_bits": wb, "act_bits": ab})
                                          for tid, (wb, ab) in all_ft.items()])
        fitted = [(sens.score(wb, ab), res[tid]["accuracy"]) for tid, (wb, ab) in ft_jobs.items()
                  if "accuracy" in res[tid]]
        predictor = fit([s for s, _ in fitted], [a for _, a in fitted])
        finetunes = dict(res)
        timing["fit_s"] = time.perf_counter() - t0
        form = "{a0:.4g} * exp(-{alpha:.4g} x score)" if predictor.form == "exponential" else \
            "{a0:.4g} - {alpha:.4g} x score"
        log(f"[explore] predictor: accuracy = {form.format(a0=predictor.a0, alpha=predictor.alpha)} "
            f"(fitted on {predictor.fitted_on} fine-tunes)")
        # 4. the joint program and its sweep
        t0 = time.perf_counter()
        program = prog_mod.joint_program(tables, units, depends, w_grid, a_grid, n_w, n_a, board, sens.weight,
                                         sens.act, cfg.ceilings)
        choices = prog_mod.sweep(program, cfg.budgets, cfg.time_limit,
                                 log=lambda m: log(f"[explore program]{m}"))
        timing["program_s"] = time.perf_counter() - t0
        log(f"[explore] integer program: {program.columns:,} columns, {len(choices)} distinct designs")
        clock, shell = board["clock_mhz"] * 1e6, board.get("shell", {})
        points = []
        for ch in choices:
            points.append(_point(ch.weight_bits, ch.act_bits, "front", predictor.accuracy(ch.score), ch.score,
                                 clock / ch.cycles, ch.resources, ch.optimal, shell=shell))
        for tid, (wb, ab) in all_ft.items():
            r = finetunes[tid]
            role = "fit" if tid in ft_jobs else "held out"
            plan = program.solve(math.inf, cfg.time_limit, fixed=(wb, ab))  # its folding: FPS and resources
            points.append(_point(wb, ab, role, predictor.accuracy(sens.score(wb, ab)), sens.score(wb, ab),
                                 None if plan is None else clock / plan.cycles,
                                 None if plan is None else plan.resources,
                                 None if plan is None else plan.optimal, measured=r.get("accuracy"), timing=r,
                                 status=("does not fit" if plan is None else None) if "accuracy" in r
                                 else r.get("status"), shell=shell))
        mark_pareto([p for p in points if p["role"] == "front"])
        # 5. verification: the best K of the predicted front and the baseline (below)
        front = sorted([p for p in points if p["role"] == "front" and p["pareto"]], key=lambda p: -p["fps"])
        verify = pick_verify(front, cfg.verify, baseline, sens, predictor, program, cfg.time_limit, clock)
        if baseline is not None:
            s = sens.score(baseline["weight_bits"], baseline["act_bits"])
            plan = program.solve(math.inf, cfg.time_limit, fixed=(baseline["weight_bits"], baseline["act_bits"]))
            base = _point(list(baseline["weight_bits"]), list(baseline["act_bits"]), "baseline",
                          predictor.accuracy(s), s, None if plan is None else clock / plan.cycles,
                          None if plan is None else plan.resources, None if plan is None else plan.optimal,
                          shell=shell)
            base["name"] = baseline.get("name", "baseline")
            points.append(base)
            verify.append(base)
        t0 = time.perf_counter()
        v_jobs = {point_id("ft", p["weight_bits"], p["act_bits"]): p for p in verify}
        res = run_tasks(out, "finetune", [(tid, "finetune_task", {"specs": specs, "weight_bits": p["weight_bits"],
                                                                  "act_bits": p["act_bits"]})
                                          for tid, p in v_jobs.items()])
        b_jobs = []
        for tid, p in v_jobs.items():
            r = res[tid]
            p["accuracy_measured"] = r.get("accuracy")
            p["cost_s"].update({k: r[k] for k in ("finetune_s", "evaluate_s") if k in r})
            if "state" not in r:
                p["status"] = r.get("status", "failed: no fine-tuned model")
                continue
            bid = tid.replace("ft-", "build-", 1)
            b_jobs.append((bid, "build_task", {"specs": specs, "weight_bits": p["weight_bits"],
                                               "act_bits": p["act_bits"], "state": r["state"],
                                               "input_shape": input_shape,
                                               "out_dir": str((out / "builds" / bid).resolve()), "board": cfg.board,
                                               "ceilings": cfg.ceilings}))
        res_b = run_tasks(out, "build", b_jobs)
        for bid, _, _ in b_jobs:
            p = v_jobs[bid.replace("build-", "ft-", 1)]
            r = res_b[bid]
            if p["fps"] is not None:  # keep the program's figures beside the build's
                p["planned"] = {"fps": p["fps"], "lut": p["lut"], "bram18": p["bram18"], "dsp": p["dsp"]}
            p["cost_s"]["build_s"] = r.get("build_s")
            p["status"] = r["status"]
            if r["status"] == "verified":
                p.update(fps=r["fps"], lut=r["lut"], bram18=r["bram18"], dsp=r["dsp"], build=r["build"],
                         bottleneck=r["bottleneck"], csim=r["csim"])
            else:
                p.update(fps=None, lut=None, bram18=None, dsp=None)
        # 6. matched-FPS builds: a max-FPS build fills the LUT budget whatever the point, so LUTs compare only
        # between designs at one FPS; each verified point at least as fast as the baseline is built again at the
        # baseline's verified FPS (the folder's cheapest design reaching it)
        base_v = next((p for p in verify if p["role"] == "baseline" and p["status"] == "verified"), None)
        m_jobs = []
        for tid, p in v_jobs.items():
            if base_v is None or p is base_v or p["status"] != "verified" or p["fps"] < base_v["fps"]:
                continue
            mid = tid.replace("ft-", "match-", 1)
            m_jobs.append((mid, "build_task", {"specs": specs, "weight_bits": p["weight_bits"],
                                               "act_bits": p["act_bits"], "state": res[tid]["state"],
                                               "input_shape": input_shape,
                                               "out_dir": str((out / "builds" / mid).resolve()), "board": cfg.board,
                                               "ceilings": cfg.ceilings, "target_fps": base_v["fps"]}))
        res_m = run_tasks(out, "matched build", m_jobs)
        for mid, _, kwargs in m_jobs:
            r = res_m[mid]
            p = v_jobs[mid.replace("match-", "ft-", 1)]
            p["cost_s"]["matched_build_s"] = r.get("build_s")
            p["at_baseline_fps"] = {"target_fps": kwargs["target_fps"], "status": r["status"],
                                    **{k: r.get(k) for k in ("fps", "lut", "bram18", "dsp", "build")}}
        timing["verify_s"] = time.perf_counter() - t0
    finally:
        if started:
            import ray

            ray.shutdown()
    held = [(p["accuracy_predicted"], p["accuracy_measured"]) for p in verify
            if p["accuracy_measured"] is not None and point_id("ft", p["weight_bits"], p["act_bits"]) not in ft_jobs]
    held += [(p["accuracy_predicted"], p["accuracy_measured"]) for p in points if p["role"] == "held out"
             and p["accuracy_measured"] is not None and all(p["weight_bits"] != v["weight_bits"] or
                                                            p["act_bits"] != v["act_bits"] for v in verify)]
    q = quality([a for a, _ in held], [b for _, b in held])
    points = merge_points(points)
    mark_pareto(points)
    doc = {"points": points, "dominates_baseline": dominates_baseline(points),
           "predictor": {"spearman": q["spearman"], "mae": q["mae"], "fitted_on": predictor.fitted_on,
                         "held_out": q["held_out"], "model": "accuracy = a0 - alpha * score, or a0 * exp(-alpha * "
                         "score) (form); score = the sum of per-layer output perturbations", **predictor.to_json()},
           "engine": engine,
           "program": {"columns": program.columns, "units": len(program.units), "budgets": cfg.budgets,
                       "note": "FPS/LUT of 'predicted' points are the program's (the layers' cost models and the "
                       "board's shell; width converters between units and FIFO depths left out); 'verified' points "
                       "carry the build's report figures "
                       "(estimated by fpgagen's cost model, not measured on hardware)"},
           "sensitivity": sens.to_json(),
           "shape": asdict(shape), "board": cfg.board, "timing_s": {k: round(v, 1) for k, v in timing.items()},
           "wall_s": round(time.perf_counter() - t_start, 1)}
    write_outputs(out, doc)
    return doc


def _point(wb, ab, role, acc_pred, score, fps, res, optimal, measured=None, timing=None, status=None,
           shell: dict | None = None) -> dict:
    if res is not None:  # the platform shell too, as the build's report counts it
        res = add_resources(res, shell or {})
    return {"weight_bits": list(wb), "act_bits": list(ab), "role": role,
            "fps": fps, "lut": None if res is None else res["LUT"], "bram18": None if res is None else res["BRAM18"],
            "dsp": None if res is None else res["DSP"], "accuracy_predicted": acc_pred, "accuracy_measured": measured,
            "score": score, "pareto": False, "build": None,
            "status": status or "predicted", "program_optimal": optimal,
            "cost_s": {k: timing[k] for k in ("finetune_s", "evaluate_s") if timing and k in timing}}


def pick_verify(front: list[dict], k: int, baseline: dict | None, sens, predictor, program, time_limit: float,
                clock: float) -> list[dict]:
    """The best ``k`` points of the predicted front: first those predicted to beat the baseline on both accuracy
    and FPS (the points that would replace it; fastest first), then the rest spread evenly over the front."""
    picks: list[dict] = []
    if baseline is not None and k:
        s = sens.score(baseline["weight_bits"], baseline["act_bits"])
        plan = program.solve(math.inf, time_limit, fixed=(baseline["weight_bits"], baseline["act_bits"]))
        if plan is not None:
            acc, fps = predictor.accuracy(s), clock / plan.cycles
            picks = [p for p in front if p["accuracy_predicted"] >= acc and p["fps"] >= fps][:k]
    rest = [p for p in front if p not in picks]
    need = k - len(picks)
    if need > 0 and rest:
        picks += [rest[round(i * (len(rest) - 1) / max(need - 1, 1))] for i in range(min(need, len(rest)))]
    out, seen = [], set()
    for p in picks:
        key = (tuple(p["weight_bits"]), tuple(p["act_bits"]))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def dominates_baseline(points: list[dict]) -> list[dict]:
    """The points that dominate the verified baseline under the issue's rule, each with the figures that decide it:
    measured accuracy at least the baseline's, and a verified build at the baseline's FPS (``at_baseline_fps``)
    reaching at least that FPS with fewer LUTs than the baseline's build. Empty without a verified baseline."""
    base = next((p for p in points if "baseline" in p["role"] and p["status"] == "verified"
                 and p["accuracy_measured"] is not None), None)
    if base is None:
        return []
    out = []
    for p in points:
        m = p.get("at_baseline_fps") or {}
        if (p is base or p["accuracy_measured"] is None or m.get("status") != "verified"
                or p["accuracy_measured"] < base["accuracy_measured"] or m["fps"] < base["fps"]
                or m["lut"] >= base["lut"]):
            continue
        out.append({"weight_bits": p["weight_bits"], "act_bits": p["act_bits"],
                    "accuracy_measured": p["accuracy_measured"], "fps": m["fps"], "lut": m["lut"],
                    "baseline": {"accuracy_measured": base["accuracy_measured"], "fps": base["fps"],
                                 "lut": base["lut"]}})
    return out


def merge_points(points: list[dict]) -> list[dict]:
    """One point per width choice: a verified one first, then the baseline, the front, a fit point; the roles are
    joined and the others' measured accuracy and costs kept."""
    rank = {"baseline": 1, "front": 2, "fit": 3, "held out": 4}
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((tuple(p["weight_bits"]), tuple(p["act_bits"])), []).append(p)
    out = []
    for group in groups.values():
        group.sort(key=lambda p: (p["status"] != "verified", rank.get(p["role"], 9)))
        head = group[0]
        for other in group[1:]:
            if head["accuracy_measured"] is None:
                head["accuracy_measured"] = other["accuracy_measured"]
            for k, v in other["cost_s"].items():
                head["cost_s"].setdefault(k, v)
            if "planned" not in head and other["status"] != "verified" and other["fps"] is not None:
                head["planned"] = {k: other[k] for k in ("fps", "lut", "bram18", "dsp")}
            if "name" in other:
                head.setdefault("name", other["name"])
            if head["status"] == "predicted" and other["status"] != "predicted":  # its fine-tune failed, or ..
                head["status"] = other["status"]
        head["role"] = "+".join(sorted({p["role"] for p in group}, key=lambda r: rank.get(r, 9)))
        out.append(head)
    return out


# --- outputs -----------------------------------------------------------------------------------------------
def write_outputs(out: Path, doc: dict) -> None:
    write_atomic(out / "pareto.json", json.dumps(doc, indent=1))
    write_atomic(out / "pareto.md", pareto_markdown(doc))
    try:
        write_plot(out / "pareto.png", doc)
    except ImportError:  # matplotlib is optional
        pass


def _fmt(v, spec=".4g") -> str:
    return "-" if v is None else format(v, spec)


def pareto_markdown(doc: dict) -> str:
    pts = sorted(doc["points"], key=lambda p: (p["fps"] is None, -(p["fps"] or 0)))
    q = doc["predictor"]
    lines = ["# Explore: accuracy x FPS", "",
             f"Engine: {doc['engine']['name']} at {doc['engine']['address']} ({doc['engine']['workers']} workers); "
             f"wall time {doc['wall_s']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in doc['timing_s'].items())}).",
             "", "FPS and resources are *estimated* by fpgagen's cost models (verified points: the build's report; "
             "predicted points: the joint integer program), never measured on hardware.", "",
             "| role | weight bits | act bits | FPS | LUT | BRAM18 | DSP | at baseline FPS: FPS / LUT | "
             "acc. predicted | acc. measured | pareto | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in pts:
        m = p.get("at_baseline_fps")
        matched = "" if m is None else (f"{_fmt(m['fps'], '.1f')} / {_fmt(m['lut'], ',')}"
                                        if m["status"] == "verified" else m["status"][:40])
        lines.append(f"| {p.get('name', p['role'])} | {','.join(map(str, p['weight_bits']))} | "
                     f"{','.join(map(str, p['act_bits']))} | {_fmt(p['fps'], '.1f')} | {_fmt(p['lut'], ',')} | "
                     f"{_fmt(p['bram18'])} | {_fmt(p['dsp'])} | {matched} | {_fmt(p['accuracy_predicted'])} | "
                     f"{_fmt(p['accuracy_measured'])} | {'yes' if p['pareto'] else ''} | {p['status']} |")
    base = next((p for p in doc["points"] if "baseline" in p["role"]), None)
    if base is not None:
        lines += ["", "Max-FPS builds fill the LUT budget whatever the point, so LUTs are compared at one FPS: each "
                  "verified point at least as fast as the baseline is built again at the baseline's verified FPS "
                  "(the cheapest design reaching it; column 'at baseline FPS')."]
        wins = doc.get("dominates_baseline") or []
        name = base.get("name", "the baseline")
        if base["status"] != "verified":
            lines.append(f"Dominance: not decided ({name} is not verified: {base['status']}).")
        elif wins:
            lines.append(f"Dominance: {len(wins)} verified point(s) dominate {name} (measured accuracy >= "
                         f"{_fmt(base['accuracy_measured'])}, FPS >= {base['fps']:.1f}, LUT < {base['lut']:,}): "
                         + "; ".join(f"w {','.join(map(str, w['weight_bits']))} a {','.join(map(str, w['act_bits']))}"
                                     f" (acc. {_fmt(w['accuracy_measured'])}, {w['fps']:.1f} FPS, {w['lut']:,} LUT)"
                                     for w in wins) + ".")
        else:
            lines.append(f"Dominance: no verified point dominates {name} (measured accuracy >= "
                         f"{_fmt(base['accuracy_measured'])}, FPS >= {_fmt(base['fps'], '.1f')} and LUT < "
                         f"{_fmt(base['lut'], ',')} at the baseline's FPS).")
    lines += ["", f"Predictor: Spearman {_fmt(q['spearman'], '.3f')}, MAE {_fmt(q['mae'])} on {q['held_out']} "
              f"held-out fine-tunes (fitted on {q['fitted_on']}).", ""]
    costs = [p["cost_s"] for p in doc["points"] if p.get("cost_s")]
    if costs:
        kinds = ("finetune_s", "evaluate_s", "build_s", "matched_build_s")
        means = {k: [c[k] for c in costs if c.get(k) is not None] for k in kinds}
        lines.append("Per-point cost (s, mean over the points that ran it): " + ", ".join(
            f"{k} {sum(v) / len(v):.1f} (n={len(v)})" for k, v in means.items() if v) + ".")
    return "\n".join(lines) + "\n"


def write_plot(path: Path, doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [p for p in doc["points"] if p["fps"] is not None]
    luts = [p["lut"] for p in pts if p["lut"] is not None] or [0, 1]
    norm = matplotlib.colors.Normalize(min(luts), max(luts))
    cmap = matplotlib.colormaps["viridis"]
    for p in pts:
        colour = cmap(norm(p["lut"])) if p["lut"] is not None else "grey"
        ax.scatter(p["fps"], p["accuracy_predicted"], facecolors="none", edgecolors=[colour], marker="o", s=40)
        if p["accuracy_measured"] is not None:
            ax.scatter(p["fps"], p["accuracy_measured"], c=[colour], marker="s" if p["status"] == "verified" else "^",
                       s=50, edgecolors="black" if p["pareto"] else "none")
            ax.plot([p["fps"]] * 2, [p["accuracy_predicted"], p["accuracy_measured"]], color="grey", lw=0.6)
        if p.get("name"):
            ax.annotate(p["name"], (p["fps"], p["accuracy_measured"] or p["accuracy_predicted"]), fontsize=8)
    for w in doc.get("dominates_baseline") or []:  # a star at the dominating point's own (max-FPS) build
        p = next(q for q in pts if q["weight_bits"] == w["weight_bits"] and q["act_bits"] == w["act_bits"])
        ax.scatter(p["fps"], p["accuracy_measured"], marker="*", s=220, facecolors="none", edgecolors="red")
        ax.annotate("dominates baseline", (p["fps"], p["accuracy_measured"]), fontsize=8, color="red",
                    xytext=(6, -10), textcoords="offset points")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="LUT (estimated)")
    ax.set_xlabel("FPS (estimated by the cost model)")
    ax.set_ylabel("accuracy")
    ax.set_title("explore: predicted (hollow) and measured (filled; square = verified build)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
