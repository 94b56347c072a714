"""``fpgagen detect``, ``fpgagen serve`` and ``fpgagen view``: argument definitions and handlers.

Nothing heavy is imported at module level (the top-level CLI imports this to build its parser). Each handler
returns an exit code; a :class:`fpgagen.errors.FpgagenError` propagates to the top-level CLI, which prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

DETECT_HELP = "detect faces in photos: annotated PNGs and detections.json"
DETECT_DESCRIPTION = ("Run the face detector on images (files or folders) and write OUT/<name>.png annotated and "
                      "OUT/detections.json ({image file name: [{box: [x1, y1, x2, y2], score}]}, original-image "
                      "pixels). Default model: the shipped W4A4 face detector, built on first use and cached.")
SERVE_HELP = "run the detector on a camera, video or images and stream the results (TCP + browser page)"
SERVE_DESCRIPTION = ("Threaded pipeline (source -> letterbox -> accelerator -> decode + NMS -> sinks) streaming "
                     "protocol v1 on TCP (see the README, 'Host runtime') and a browser page with the live MJPEG "
                     "stream, per-stage metrics and /detections.json. Binds to 127.0.0.1 unless --host is given.")
VIEW_HELP = "show or save a 'fpgagen serve' stream"
VIEW_DESCRIPTION = ("Connect to a 'fpgagen serve' TCP stream: an OpenCV window where a display exists, else "
                    "--save DIR (JPEG frames and detections.jsonl). Reconnects when the server restarts.")

EXAMPLES = """examples:
  fpgagen detect photo.jpg more/*.png -o out/
  fpgagen serve --backend csim --video clip.mp4 --port 9000
  fpgagen serve deploy/ --camera 0 --port 9000 --host 0.0.0.0
  fpgagen view 127.0.0.1:9000 --save frames/
"""


def _anchors(text: str) -> list:
    values = [float(v) for v in text.replace(" ", "").split(",") if v]
    if len(values) % 2 or not values:
        raise argparse.ArgumentTypeError("anchors are w,h pairs: e.g. 16,19,40,47,100,118")
    return [values[i:i + 2] for i in range(0, len(values), 2)]


def _fraction(upper_closed: bool):
    """An argparse type: a number in (0, 1), or (0, 1] with ``upper_closed``; a score is a probability."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (0 < value < 1 or (upper_closed and value == 1)):
            raise argparse.ArgumentTypeError(f"'{text}' is not a number in (0, {'1]' if upper_closed else '1)'}")
        return value
    return parse


def _positive_int_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 0")
    return value


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("csim", "reference", "pynq"),
                   help="pynq (the bitstream, on the board), csim (the generated C++), reference (numpy); default: "
                   "pynq on a PYNQ board, csim elsewhere")
    p.add_argument("--anchors", type=_anchors, help="w,h pairs the head was trained with (default: the build's "
                   "detector.json)")
    p.add_argument("--conf", type=_fraction(upper_closed=False), default=0.5,
                   help="objectness threshold, 0 < conf < 1 (default 0.5)")
    p.add_argument("--nms-iou", type=_fraction(upper_closed=True), default=0.3,
                   help="NMS overlap threshold, 0 < iou <= 1 (default 0.3; 1 keeps every box)")
    p.add_argument("--bitstream", help="pynq backend: the .bit (default: the first .bit under the build dir)")
    p.add_argument("--plain", action="store_true", help="the shipped detector's plain build (the host letterboxes "
                   "to 416x416) instead of the default one with a 640x480 camera's letterbox in the fabric")
    p.add_argument("--batch", type=int, default=1, help="frames per backend call when several wait (default 1)")
    p.add_argument("--save-input", metavar="FILE.npy", help="save the uint8 frames the backend received (the "
                   "first 100), for 'fpgagen debug --deployed-input'")


def _load(args, build_dir):
    from .model import DEFAULT_CAMERA, load_face_detector

    options = {}
    if args.backend == "pynq" and args.bitstream:
        options["bitstream"] = args.bitstream
    detector = load_face_detector(build_dir, args.backend, args.anchors, args.conf, args.nms_iou,
                                  log=_log, camera=None if args.plain else DEFAULT_CAMERA, **options)
    if getattr(args, "save_input", None):
        from .backends import save_inputs

        save_inputs(detector.backend, args.save_input)
    return detector


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- detect ---------------------------------------------------------------------------------------------------
def add_detect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("-o", "--out", default="out", help="output directory (default out/)")
    p.add_argument("--accelerator", metavar="BUILD_DIR", help="a 'fpgagen build' directory (default: the shipped "
                   "face detector)")
    p.add_argument("--no-images", action="store_true", help="write detections.json only")
    _model_arguments(p)


def run_detect(args) -> int:
    from ..errors import FpgagenError
    from .pipeline import Pipeline
    from .sinks import FileSink
    from .sources import ImageFiles

    source = ImageFiles(args.images)
    # before a build that may take minutes: every input is there and the output directory can be made
    missing = [str(p) for p in source.paths if not p.is_file()]
    if missing:
        raise FpgagenError(f"no such image file{'s' if len(missing) > 1 else ''}: {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""), "fpgagen detect",
                           "check the paths (nothing was run)")
    try:
        sink = FileSink(args.out, images=not args.no_images)
    except OSError as exc:
        raise FpgagenError(f"cannot create the output directory ({exc.strerror or exc})", f"-o {args.out}",
                           "pass a writable directory") from None
    detector = _load(args, args.accelerator)
    start = time.perf_counter()
    pipeline = Pipeline(source, detector, [sink], batch=args.batch, metrics_every=0, log=_log)
    metrics = pipeline.run()
    done = len(sink.detections)
    faces = sum(len(v) for v in sink.detections.values())
    for name, dets in sink.detections.items():
        print(f"{name}: {len(dets)} face(s)" + "".join(f"\n  {d['box']} score {d['score']:.2f}" for d in dets))
    print(f"{done} image(s), {faces} face(s) in {time.perf_counter() - start:.1f} s on the "
          f"{detector.backend.name} backend; wrote {Path(args.out) / 'detections.json'}"
          + (f" and {len(sink.written)} annotated PNG(s)" if sink.written else ""))
    (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if sink.errors:
        print(f"fpgagen: {len(sink.errors)} image(s) could not be processed: {', '.join(sink.errors)}",
              file=sys.stderr)
        return 2
    return 0


# --- serve ----------------------------------------------------------------------------------------------------
def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build_dir", nargs="?", help="a 'fpgagen build' (or deploy) directory (default: the shipped "
                   "face detector)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="INDEX", help="OpenCV camera index (live: drops old frames)")
    src.add_argument("--video", help="video file")
    src.add_argument("--images", nargs="+", help="image files or folders")
    p.add_argument("--fps", type=float, help="pace the video or images at this rate (makes them live)")
    p.add_argument("--loop", action="store_true", help="replay the video at its end")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 = every "
                   "interface, only on a trusted network)")
    p.add_argument("--port", type=int, default=9000, help="TCP stream port (default 9000; 0 = pick a free one)")
    p.add_argument("--http-port", type=int, default=8080, help="browser page port (default 8080; -1 = off)")
    p.add_argument("--token", default=os.environ.get("FPGAGEN_TOKEN"),
                   help="shared token viewers must send first (default $FPGAGEN_TOKEN; none)")
    p.add_argument("--preview-fps", type=float, default=10.0, help="JPEG previews per second (default 10; "
                   "detections go out for every frame)")
    p.add_argument("--save", help="also write annotated PNGs and detections.json here (the newest --save-max frames)")
    p.add_argument("--save-max", type=_positive_int_or_zero, default=500, metavar="N",
                   help="--save keeps only the newest N frames, deleting older PNGs as it goes (default 500, "
                   "about 250 MB at 640x480; 0 = no limit)")
    p.add_argument("--metrics-json", help="write the metrics here (periodically and at the end)")
    p.add_argument("--metrics-every", type=float, default=5.0, help="print metrics every N s (default 5; 0 = off)")
    p.add_argument("--queue", type=int, default=2, help="frames each queue holds (default 2)")
    _model_arguments(p)


def run_serve(args) -> int:
    from .pipeline import Pipeline
    from .server import StreamServer
    from .sinks import CallbackSink, FileSink
    from .sources import ImageFiles, VideoCapture
    from .web import WebServer

    if args.camera is not None:
        source = VideoCapture(args.camera, max_frames=args.max_frames)
    elif args.video:
        source = VideoCapture(args.video, fps=args.fps, loop=args.loop, max_frames=args.max_frames)
    else:
        source = ImageFiles(args.images, fps=args.fps, loop=args.loop, max_frames=args.max_frames)
    detector = _load(args, args.build_dir)
    if args.camera is not None and detector.backend.name == "pynq":  # the board: the camera in a process of its own
        from .shared import shared_camera

        source.close()
        source = shared_camera(args.camera, preview_fps=args.preview_fps, max_frames=args.max_frames)
    info = {"model": Path(args.build_dir).name if args.build_dir else "shipped face detector (W4A4)",
            "backend": detector.backend.name, "input": list(detector.backend.input_shape),
            "preview_fps": args.preview_fps}
    sinks = []
    try:
        sinks.append(StreamServer(args.host, args.port, args.token, info=info, log=_log).start())
        if args.http_port >= 0:
            sinks.append(WebServer(args.host, args.http_port, title=f"{info['model']} on {info['backend']}",
                                   log=_log).start())
    except BaseException:
        for s in sinks:
            s.close()
        raise
    if args.save:
        sinks.append(FileSink(args.save, keep=args.save_max or None))
    if args.metrics_json:
        sinks.append(CallbackSink(_metrics_writer(Path(args.metrics_json), args.metrics_every or 5.0),
                                  wants_image=False))
    pipeline = Pipeline(source, detector, sinks, queue_size=args.queue, batch=args.batch,
                        preview_fps=args.preview_fps, metrics_every=args.metrics_every, log=_log)
    with _sigterm_as_interrupt():
        metrics = pipeline.run()
    _log(pipeline.metrics.format())
    if args.metrics_json:
        Path(args.metrics_json).write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics))
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """``kill PID`` (systemd, a notebook's stop button) shuts down as cleanly as Ctrl-C."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _metrics_writer(path: Path, every: float):
    last = [0.0]

    def write(result) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            path.write_text(json.dumps(result.metrics, indent=1))

    return write


# --- view -----------------------------------------------------------------------------------------------------
def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", help="HOST:PORT of a 'fpgagen serve' stream, e.g. 127.0.0.1:9000")
    p.add_argument("--save", help="write the frames (JPEG) and detections.jsonl here instead of a window")
    p.add_argument("--token", default=os.environ.get("FPGAGEN_TOKEN"), help="the server's shared token")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--give-up-after", type=float, help="stop when no server answers for this many seconds "
                   "(default: keep retrying)")


def run_view(args) -> int:
    from .viewer import Viewer, parse_address

    host, port = parse_address(args.address)
    viewer = Viewer(host, port, token=args.token, save=args.save, show=None if not args.save else False,
                    give_up_after=args.give_up_after, max_frames=args.max_frames, log=_log)
    frames = viewer.run()
    _log(f"fpgagen view: {frames} frame(s), {viewer.images} image(s), {viewer.connections} connection(s)"
         + (f"; saved in {args.save}" if args.save else ""))
    if viewer.gave_up and not viewer.connections:
        from ..errors import FpgagenError

        raise FpgagenError(f"no 'fpgagen serve' answered at {host}:{port} for {args.give_up_after:g} s",
                           "fpgagen view", "start 'fpgagen serve' there, or check the address and port")
    return 0
