"""Decode (integer path == float path), NMS, the WIDER-style AP evaluator on hand-computed cases, the detector."""

import numpy as np
import pytest

from fpgagen.detect import (
    BANDS,
    Backend,
    Detections,
    Detector,
    GroundTruth,
    average_precision,
    code_threshold,
    decode_codes,
    decode_float,
    evaluate,
    iou_matrix,
    nms,
    plot_pr,
    voc_ap,
)
from fpgagen.detect.evaluate import FP, IGNORED, TP, match_image

SCALE = 2.0 ** -7  # LPYOLO's 8-bit hardtanh in [-1, 1)
ANCHORS = ((10, 14), (23, 27), (37, 58))


# --- decode ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conf", [0.5, 0.3, 0.01, 0.75, 0.9, 0.5 + 2 ** -8, 0.25, 0.0, 0.999])
def test_code_threshold_is_the_exact_boundary(conf):
    t = code_threshold(conf, SCALE)
    q = np.arange(-128, 128)
    passes = (q * SCALE) / 2 + 0.5 > conf  # exact in float64: q * 2**-7 is a dyadic rational
    assert np.array_equal(q >= t, passes)


def test_code_threshold_with_zero_point_and_bad_scale():
    assert code_threshold(0.5, 0.5, zero_point=3) == 4  # (q - 3) * 0.5 / 2 + 0.5 > 0.5  <=>  q > 3
    with pytest.raises(ValueError):
        code_threshold(0.5, 0.0)


def _random_codes(seed, h=13, w=13, hot=12):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-128, 128, size=(18, h, w)).astype(np.int64)
    codes[4::6] = rng.integers(-128, -20, size=(3, h, w))  # mostly background objectness
    a, y, x = rng.integers(0, 3, hot), rng.integers(0, h, hot), rng.integers(0, w, hot)
    codes[a * 6 + 4, y, x] = rng.integers(0, 128, hot)
    return codes


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("conf", [0.5, 0.3, 0.01, 0.8])
def test_integer_and_float_decode_give_identical_boxes(seed, conf):
    codes = _random_codes(seed)
    y = (codes.astype(np.float32) * np.float32(SCALE)).astype(np.float32)  # what Accelerator.run dequantizes to
    a = decode_codes(codes, SCALE, 0.0, conf, ANCHORS)
    b = decode_float(y, conf, ANCHORS)
    assert len(a) > 0 or conf > 0.5
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    na, nb = nms(a, 0.3), nms(b, 0.3)
    assert np.array_equal(na.boxes, nb.boxes) and np.array_equal(na.scores, nb.scores)


def test_decode_formulas_on_one_cell():
    codes = np.full((18, 13, 13), -128, np.int64)
    # anchor 1 at row 2, column 5: y_x = 0.25, y_y = -0.5, y_w = 0, y_h = 0.5, y_obj = 0.5, y_cls = 1 - 2**-7
    codes[6:12, 2, 5] = [32, -64, 0, 64, 64, 127]
    det = decode_codes(codes, SCALE, 0.0, 0.5, ANCHORS)
    cx, cy, w, h = (0.25 + 0.5 + 5) * 32, (-0.5 + 0.5 + 2) * 32, 1.0 * 23, 1.5 ** 2 * 27
    assert np.allclose(det.boxes, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], atol=0, rtol=0)
    assert np.array_equal(det.scores, [0.75])


def test_decode_rejects_wrong_shapes_and_types():
    with pytest.raises(ValueError):
        decode_codes(np.zeros((12, 13, 13), np.int64), SCALE)
    with pytest.raises(TypeError):
        decode_codes(np.zeros((18, 13, 13), np.float32), SCALE)
    assert len(decode_codes(np.full((18, 4, 4), -128, np.int8), SCALE)) == 0


# --- NMS -------------------------------------------------------------------------------------------------------
def test_nms_keeps_best_and_suppresses_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5], [50, 50, 60, 60]],
                     np.float64)
    scores = np.array([0.6, 0.9, 0.7, 0.9, 0.1])
    out = nms(Detections(boxes, scores), iou=0.3)
    # the two 0.9 boxes overlap: the first one (index 1) wins the tie; box 0 is suppressed by it
    assert np.array_equal(out.boxes, boxes[[1, 2, 4]]) and np.array_equal(out.scores, [0.9, 0.7, 0.1])
    assert len(nms(Detections(boxes, scores), iou=0.99)) == 5  # boxes 0 and 3 overlap by 100/105 only
    assert np.array_equal(nms(Detections(boxes, scores), iou=0.95).boxes, boxes[[1, 3, 2, 4]])
    assert len(nms(Detections(boxes, scores), iou=0.3, max_out=2)) == 2
    assert len(nms(Detections.empty())) == 0


def test_iou_plus_one_convention():
    a = np.array([[0, 0, 9, 9]])
    b = np.array([[0, 0, 4, 9]])
    assert iou_matrix(a, b, plus_one=True)[0, 0] == 0.5  # 50 / 100 pixels
    assert iou_matrix(a, b)[0, 0] == pytest.approx(36 / 81)
    assert iou_matrix(a, np.array([[20, 20, 30, 30]]), plus_one=True)[0, 0] == 0


# --- AP evaluator, hand-computed -------------------------------------------------------------------------
def test_ap_hand_computed_case():
    # image A: faces g1, g2; detections: exact g1 (0.9), a miss (0.8), a duplicate of g1 (0.7), g2 (0.6)
    # image B: face g3, never detected. 3 faces. Sorted: TP FP FP TP -> recall 1/3 1/3 1/3 2/3,
    # precision 1 1/2 1/3 1/2; envelope 1 up to recall 1/3, 1/2 up to 2/3: AP = 1/3 + 1/6 = 0.5
    gt_a = GroundTruth([[0, 0, 9, 9], [20, 20, 29, 29]])
    gt_b = GroundTruth([[0, 0, 19, 19]])
    det_a = Detections(np.array([[0, 0, 9, 9], [50, 50, 59, 59], [1, 0, 10, 9], [20, 20, 29, 29]], np.float64),
                       np.array([0.9, 0.8, 0.7, 0.6]))
    res = average_precision([det_a, Detections.empty()], [gt_a, gt_b])
    assert res.n_faces == 3 and res.n_detections == 4
    assert np.allclose(res.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert np.allclose(res.precision, [1, 1 / 2, 1 / 3, 1 / 2])
    assert res.ap == pytest.approx(0.5, abs=1e-12)
    assert np.array_equal(match_image(det_a, gt_a), [TP, FP, FP, TP])


def test_ap_iou_half_with_plus_one_is_a_hit_and_envelope():
    gt = GroundTruth([[0, 0, 9, 9], [100, 100, 139, 139]])
    det = Detections(np.array([[0, 0, 4, 9], [30, 30, 40, 40], [100, 100, 139, 139]], np.float64),
                     np.array([0.5, 0.9, 0.4]))
    # sorted: FP (0.9), TP (IoU exactly 0.5 with +1), TP -> precision 0, 1/2, 2/3; recall 0, 1/2, 1
    # envelope: 2/3 over the whole recall range -> AP = 2/3
    res = average_precision([det], [gt])
    assert res.ap == pytest.approx(2 / 3, abs=1e-12)
    assert voc_ap(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == 1.0


def test_ignored_faces_neither_reward_nor_punish():
    gt = GroundTruth([[0, 0, 9, 9], [20, 20, 29, 29]], ignore=[False, True])
    det = Detections(np.array([[20, 20, 29, 29], [0, 0, 9, 9]], np.float64), np.array([0.9, 0.8]))
    assert np.array_equal(match_image(det, gt), [IGNORED, TP])
    res = average_precision([det], [gt])
    assert res.n_faces == 1 and res.n_detections == 1 and res.ap == 1.0


def test_height_bands():
    gt = GroundTruth([[0, 0, 19, 19], [100, 100, 199, 199]])  # heights 19 (small) and 99 (large)
    det = Detections(np.array([[0, 0, 19, 19], [300, 300, 340, 340], [100, 100, 199, 199]], np.float64),
                     np.array([0.9, 0.8, 0.7]))  # the miss is 40 px tall: a medium false positive
    res = evaluate([det], [gt])
    assert set(res) == set(BANDS)
    assert res["all"].ap == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)
    assert res["small (h<32px)"].ap == 1.0 and res["small (h<32px)"].n_faces == 1
    assert res["large (h>=96px)"].ap == 1.0 and res["large (h>=96px)"].n_detections == 1
    assert np.isnan(res["medium (32-96px)"].ap) and res["medium (32-96px)"].n_detections == 1


def test_pr_plot(tmp_path):
    gt = GroundTruth([[0, 0, 9, 9]])
    res = average_precision([Detections(np.array([[0, 0, 9, 9]], np.float64), np.array([0.9]))], [gt])
    plot_pr({"model": res}, tmp_path / "pr.png")
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"


# --- the detector pipeline ----------------------------------------------------------------------------------
def test_detector_maps_boxes_back_to_the_original_image():
    # a fake backend putting one face at anchor 2, cell (row 6, column 6) of a 416 input
    def run(batch):
        assert batch.shape[1:] == (416, 416, 3) and batch.dtype == np.uint8
        codes = np.full((len(batch), 18, 13, 13), -128, np.int64)
        codes[:, 12:18, 6, 6] = [0, 0, 0, 0, 100, 100]
        return codes

    det = Detector(Backend(run, (SCALE, 0.0)), ANCHORS, 416, conf=0.5)
    image = np.zeros((208, 832, 3), np.uint8)  # letterboxed at scale 1/2, 156 px of padding above
    (out,) = det([image])
    cx, cy = (0.5 + 6) * 32, (0.5 + 6) * 32
    want = np.array([[(cx - 18.5 - 0) * 2, (cy - 29 - 156) * 2, (cx + 18.5) * 2, (cy + 29 - 156) * 2]])
    assert np.allclose(out.boxes, want)
    assert out.scores[0] == 100 * SCALE / 2 + 0.5
    float_det = Detector(Backend(lambda b: run(b).astype(np.float32) * np.float32(SCALE)), ANCHORS, 416, 0.5)
    (out2,) = float_det([image])
    assert np.array_equal(out.boxes, out2.boxes) and np.array_equal(out.scores, out2.scores)


@pytest.mark.parametrize("box", [[180, 40, 199, 90], [0, 0, 20, 30], [150, 85, 199, 99]])
def test_score_labels_stay_inside_the_image(box):
    """A face at the right (or top, or bottom) edge keeps its whole score label: as many pixels of black text as
    the same label drawn in the middle of the picture, none cut off at the border."""
    from fpgagen.detect import Detections
    from fpgagen.detect.draw import annotate

    def text_pixels(b):
        grey = np.full((100, 200, 3), 90, np.uint8)
        out = annotate(grey, Detections(np.array([b], np.float64), np.array([0.87])), min_size=0)
        return int(np.all(out < 30, axis=2).sum())

    assert text_pixels(box) == text_pixels([80, 40, 120, 80]) > 20
