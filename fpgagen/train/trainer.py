"""Quantization-aware training of LPYOLO: a float pre-training phase, then Brevitas QAT fine-tuning.

Phase ``float`` trains the float twin (:func:`fpgagen.train.model.float_lpyolo`). Phase ``qat`` copies its
weights into ``lpyolo(weight_bits, act_bits)``, calibrates each ReLU's clip on a batch, and fine-tunes with
quantization in the loop. Both phases train at ``size`` (small, for the CPU); the network is fully
convolutional and is evaluated and deployed at ``eval_size`` (416).

``init_float`` skips the float phase and starts QAT from a given float checkpoint. Before QAT the float
model's conv channels are equalized (:func:`fpgagen.train.model.equalize_channels`), so that LPYOLO's
per-tensor 4-bit weight quantizers do not round whole channels away.

Every ``ckpt_every`` iterations ``OUT/state.pt`` holds the phase, iteration, model and optimizer, so an
interrupted run continues with ``resume=True``. Batches depend only on ``(seed, phase, iteration)`` and the
learning rate only on the iteration, so a resumed run sees the same data and schedule.
At the end ``OUT/float.pt`` and ``OUT/w4a4.pt`` (named for the bit widths) and ``OUT/record.json`` are written.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..data import SyntheticConfig, WiderFace, augment, synthetic
from ..errors import FpgagenError
from .loss import LossWeights, yolo_loss
from .model import build_model, float_lpyolo, freeze_head_scale, quantize_from_float, save_checkpoint

SYNTH_ANCHORS = ((16, 19), (40, 47), (100, 118))  # face sizes of the synthetic set (12-220 px tall at 416)
PHASES = ("float", "qat")


@dataclass
class TrainConfig:
    out: str = "build/train"
    data: str | None = None  # WIDER FACE root; None = the synthetic set
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    weight_bits: int = 4
    act_bits: int = 4
    anchors: tuple = SYNTH_ANCHORS
    size: int = 160  # training input (a multiple of 32)
    eval_size: int = 416
    batch: int = 32
    float_iters: int = 2000
    qat_iters: int = 1200
    lr_float: float = 3e-3
    lr_qat: float = 1e-3
    weight_decay: float = 5e-4
    warmup: int = 100
    zoom: tuple = (1.0, 2.0)  # x the letterbox fit: 256 px synthetic images -> 0.62-1.25 x at 160
    seed: int = 0
    threads: int = 2
    ckpt_every: int = 250
    calib_images: int = 64
    init_float: str | None = None  # start QAT from this float checkpoint instead of running the float phase

    def to_json(self) -> dict:
        d = asdict(self)
        d["anchors"] = [list(a) for a in self.anchors]
        d["zoom"] = list(self.zoom)
        return d

    @staticmethod
    def from_json(d: dict) -> TrainConfig:
        d = dict(d)
        d["synthetic"] = SyntheticConfig(**d.get("synthetic", {}))
        d["anchors"] = tuple(tuple(a) for a in d["anchors"])
        d["zoom"] = tuple(d["zoom"])
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in names})

    @property
    def quant_name(self) -> str:
        return f"w{self.weight_bits}a{self.act_bits}"


def data_root(config: TrainConfig, log=None) -> Path:
    """The WIDER-layout root to read: the user's WIDER FACE, or the synthetic set (generated once)."""
    if config.data:
        return Path(config.data)
    return synthetic.ensure(config.synthetic, log=log)


class Batches:
    """Augmented training batches; batch ``k`` of a phase is a pure function of ``(seed, phase, k)``."""

    def __init__(self, dataset: WiderFace, config: TrainConfig):
        self.ds, self.cfg = dataset, config
        if len(dataset) == 0:
            raise ValueError("the training split holds no images")

    def __call__(self, phase: str, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
        rng = np.random.default_rng([self.cfg.seed, PHASES.index(phase), k])
        idx = rng.integers(0, len(self.ds), self.cfg.batch)
        images, boxes = [], []
        for i in idx:
            s = self.ds[int(i)]
            img, b = augment(s.image, s.boxes, self.cfg.size, rng, zoom=self.cfg.zoom)
            images.append(img)
            boxes.append(b)
        return np.stack(images), boxes


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255


def lr_at(k: int, total: int, base: float, warmup: int) -> float:
    if k < warmup:
        return base * (k + 1) / warmup
    t = (k - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class Progress:
    """A one-line progress bar on stderr (a plain line per update when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, start: int = 0, every: int = 25, stream=sys.stderr):
        self.label, self.total, self.start, self.every, self.stream = label, total, start, every, stream
        self.t0 = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, k: int, text: str = "") -> None:
        done = k + 1
        if done % self.every and done != self.total:
            return
        rate = (done - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0
        width = 24
        fill = int(width * done / self.total)
        line = (f"{self.label} {done:>5}/{self.total} [{'=' * fill}{' ' * (width - fill)}] "
                f"{rate:5.2f} it/s eta {int(eta) // 60}:{int(eta) % 60:02d} {text}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _head_preactivation(model: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    z = model[:-1](x)
    return z.value if hasattr(z, "value") else z


def _save_state(path: Path, config: TrainConfig, phase: str, k: int, model, opt) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"config": config.to_json(), "phase": phase, "iter": k, "model": model.state_dict(),
                "opt": opt.state_dict()}, tmp)
    tmp.replace(path)


def _make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
        del name
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def train_phase(phase: str, model, batches: Batches, config: TrainConfig, start: int = 0, opt=None,
                state_path: Path | None = None, log=print) -> list[float]:
    """Run iterations ``start .. total`` of one phase; returns the per-iteration losses."""
    total = config.float_iters if phase == "float" else config.qat_iters
    base_lr = config.lr_float if phase == "float" else config.lr_qat
    opt = opt or _make_optimizer(model, base_lr, config.weight_decay)
    model.train()
    losses = []
    bar = Progress(f"[train {phase}]", total, start)
    smooth = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(batches, phase, start) if start < total else None
        for k in range(start, total):
            images, boxes = pending.result()
            if k + 1 < total:
                pending = pool.submit(batches, phase, k + 1)
            for g in opt.param_groups:
                g["lr"] = lr_at(k, total, base_lr, config.warmup)
            z = _head_preactivation(model, to_tensor(images))
            loss, parts = yolo_loss(z, boxes, config.anchors, 32, LossWeights())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            value = loss.item()
            losses.append(value)
            smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
            bar.update(k, f"loss {smooth:.3f} (box {parts['box']:.2f} obj {parts['obj']:.2f} "
                          f"noobj {parts['noobj']:.2f})")
            if state_path is not None and ((k + 1) % config.ckpt_every == 0 or k + 1 == total):
                _save_state(state_path, config, phase, k + 1, model, opt)
    model.eval()
    return losses


def calibration_batch(batches: Batches, config: TrainConfig) -> torch.Tensor:
    imgs = []
    k = 0
    while sum(len(i) for i in imgs) < config.calib_images:
        imgs.append(batches("qat", 10_000_000 + k)[0])
        k += 1
    return to_tensor(np.concatenate(imgs)[:config.calib_images])


def train(config: TrainConfig, resume: bool = False, log=print, command: str | None = None) -> dict:
    """Run both phases (or what remains of them); returns the training record (also ``OUT/record.json``)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    state = None
    if resume and state_path.is_file():
        state, saved = _read_state(state_path)
        saved.out, saved.threads = config.out, config.threads
        config = saved
        log(f"resuming phase {state['phase']} at iteration {state['iter']} from {state_path}")
    if state is None and config.init_float:  # checked before any data is generated or anything trained
        from .model import load_checkpoint

        if Path(config.init_float).resolve() == (out / "float.pt").resolve():
            raise FpgagenError("--init-float is this run's own output (OUT/float.pt, which training rewrites)",
                               f"--init-float {config.init_float}", "copy it elsewhere first, or pick another -o")
        load_checkpoint(config.init_float, kind="float", where="--init-float")
    root = data_root(config, log=log)
    train_split = "train"
    dataset = WiderFace(root, train_split)
    if len(dataset) == 0:
        raise FpgagenError(f"the {train_split} split holds no images", str(root),
                           "point --data at a WIDER FACE root whose train ground truth lists images")
    batches = Batches(dataset, config)
    record_path = out / "record.json"
    record = json.loads(record_path.read_text()) if (state and record_path.is_file()) else {
        "command": command or "", "config": config.to_json(), "data": str(root),
        "train_images": len(dataset), "host": platform.node(), "torch": torch.__version__, "phases": {}}
    anchors = [list(a) for a in config.anchors]

    # --- phase 1: float ---
    float_path = out / "float.pt"
    if state is None and config.init_float:
        import shutil

        shutil.copyfile(config.init_float, float_path)
        prior = Path(config.init_float).with_name("record.json")
        record["phases"]["float"] = {"from": str(config.init_float)}
        if prior.is_file():  # keep the record of the run that trained the float model
            before = json.loads(prior.read_text())
            record["phases"]["float"].update(before.get("phases", {}).get("float", {}))
            record["phases"]["float"]["command"] = before.get("command")
    elif state is None or state["phase"] == "float":
        model = float_lpyolo()
        opt = _make_optimizer(model, config.lr_float, config.weight_decay)
        start = 0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start = state["iter"]
        t0 = time.perf_counter()
        losses = train_phase("float", model, batches, config, start, opt, state_path, log)
        _phase_record(record, "float", config.float_iters, losses, time.perf_counter() - t0, config)
        save_checkpoint(float_path, model, "float", anchors=config.anchors,
                        meta=_meta(config, "float"))
        record_path.write_text(json.dumps(record, indent=1))
        state = None
    # --- phase 2: QAT ---
    quant_path = out / f"{config.quant_name}.pt"
    if state is None or state["phase"] == "qat":
        from .model import load_checkpoint

        if state is not None and state["phase"] == "qat":
            model = build_model("quant", config.weight_bits, config.act_bits)
            model.load_state_dict(state["model"])
            freeze_head_scale(model)
            opt = _make_optimizer(model, config.lr_qat, config.weight_decay)
            opt.load_state_dict(state["opt"])
            start = state["iter"]
        else:
            float_model, _ = load_checkpoint(float_path)
            model = quantize_from_float(float_model, calibration_batch(batches, config), config.weight_bits,
                                        config.act_bits)
            opt, start = None, 0
        t0 = time.perf_counter()
        losses = train_phase("qat", model, batches, config, start, opt, state_path, log)
        _phase_record(record, "qat", config.qat_iters, losses, time.perf_counter() - t0, config)
        save_checkpoint(quant_path, model, "quant", config.weight_bits, config.act_bits, config.anchors,
                        meta=_meta(config, "qat"))
    record["checkpoints"] = {"float": str(float_path), config.quant_name: str(quant_path)}
    record["anchors"] = anchors
    record_path.write_text(json.dumps(record, indent=1))
    state_path.unlink(missing_ok=True)
    return record


def _read_state(path: Path) -> tuple[dict, TrainConfig]:
    """OUT/state.pt for --resume, or an error naming it (a damaged one is never half-read)."""
    fix = "delete it to start over, or run without --resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_json(state["config"])
        if state["phase"] not in ("float", "qat") or not isinstance(state["iter"], int) or \
                not isinstance(state["model"], dict) or not isinstance(state["opt"], dict):
            raise ValueError("phase, iter, model or opt is not what training writes")
    except Exception as exc:  # unpickling errors, a dict lacking keys, a config of the wrong shape
        raise FpgagenError(f"cannot resume: the training state is damaged ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]})", str(path), fix) from None
    return state, saved


def _meta(config: TrainConfig, phase: str) -> dict:
    return {"phase": phase, "float_iters": config.float_iters, "qat_iters": config.qat_iters if phase == "qat" else 0,
            "train_size": config.size, "batch": config.batch, "data": config.data or "synthetic",
            "synthetic": asdict(config.synthetic)}


def _phase_record(record: dict, phase: str, iters: int, losses: list[float], seconds: float,
                  config: TrainConfig) -> None:
    prev = record["phases"].get(phase, {})
    head = losses[:50]
    tail = losses[-50:]
    record["phases"][phase] = {
        "iterations": iters, "batch": config.batch, "size": config.size,
        "images_seen": iters * config.batch,
        "seconds": round(prev.get("seconds", 0.0) + seconds, 1),
        "loss_first50": round(float(np.mean(head)), 4) if head else prev.get("loss_first50"),
        "loss_last50": round(float(np.mean(tail)), 4) if tail else None,
    }
