"""The WIDER FACE parser and loader on a fixture written here, the synthetic set, its split, the transforms."""

import cv2
import numpy as np
import pytest

from fpgagen.data import (
    SyntheticConfig,
    WiderFace,
    WiderRecord,
    augment,
    clip_boxes,
    format_wider_gt,
    letterbox,
    parse_wider_gt,
    sources,
    synthetic,
    write_wider_gt,
)
from fpgagen.errors import FpgagenError

# A WIDER-format fixture: a normal record, the zero-face record (with its line of ten zeros), a record with an
# invalid face and boxes running past the image edge, and a record whose face lies entirely outside.
GT_TEXT = """\
0--Parade/0_Parade_marchingband_1_5.jpg
2
10 20 30 40 0 0 0 0 0 0
50 5 8 10 2 0 1 0 1 0
0--Parade/0_Parade_empty_7.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_edge_3.jpg
3
-5 -6 20 26 0 0 0 0 0 0
70 50 40 30 0 0 0 1 0 0
30 30 0 12 0 0 0 0 0 0
2--Demonstration/2_outside_9.jpg
1
200 10 10 10 0 0 0 0 0 0
"""
IMAGE_SIZES = {"0--Parade/0_Parade_marchingband_1_5.jpg": (64, 96), "0--Parade/0_Parade_empty_7.jpg": (32, 32),
               "1--Handshaking/1_Handshaking_edge_3.jpg": (60, 80), "2--Demonstration/2_outside_9.jpg": (50, 50)}


def test_parse_records_counts_boxes_and_attributes():
    recs = parse_wider_gt(GT_TEXT)
    assert [r.path for r in recs] == list(IMAGE_SIZES)
    assert [len(r.boxes) for r in recs] == [2, 0, 3, 1]
    assert np.array_equal(recs[0].boxes, [[10, 20, 30, 40], [50, 5, 8, 10]])
    assert np.array_equal(recs[0].attrs[1], [2, 0, 1, 0, 1, 0])  # blur expression illumination invalid ...
    assert recs[1].boxes.shape == (0, 4) and recs[1].invalid.shape == (0,)  # zero-face record: zeros skipped
    assert np.array_equal(recs[2].invalid, [False, True, False])


def test_parse_zero_face_record_last_and_without_placeholder():
    recs = parse_wider_gt("a.jpg\r\n0\r\n0 0 0 0 0 0 0 0 0 0 \r\n")  # the official files end lines with a space
    assert len(recs) == 1 and len(recs[0].boxes) == 0
    recs = parse_wider_gt("a.jpg\n0\nb.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")  # tolerate a missing placeholder
    assert [r.path for r in recs] == ["a.jpg", "b.jpg"] and np.array_equal(recs[1].boxes, [[1, 2, 3, 4]])


@pytest.mark.parametrize("text,what", [("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", "file ends"),
                                       ("a.jpg\nx\n", "expected numbers"),
                                       ("a.jpg\n1\n1 2 3\n", "expected 10 numbers"),
                                       ("a.jpg\n", "no face count")])
def test_parse_errors_name_the_line(text, what):
    with pytest.raises(FpgagenError, match=what):
        parse_wider_gt(text, "gt.txt")


def test_format_round_trip():
    recs = parse_wider_gt(GT_TEXT)
    again = parse_wider_gt(format_wider_gt(recs))
    assert len(again) == len(recs)
    for a, b in zip(recs, again, strict=True):
        assert a.path == b.path and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.attrs, b.attrs)
    assert "0 0 0 0 0 0 0 0 0 0" in format_wider_gt([WiderRecord("z.jpg")])


def test_clip_boxes_outside_the_image():
    boxes, keep = clip_boxes([[-5, -6, 20, 26], [70, 50, 40, 30], [30, 30, 0, 12], [200, 10, 10, 10]], 80, 60)
    assert np.array_equal(keep, [True, True, False, False])  # zero width dropped; entirely outside dropped
    assert np.array_equal(boxes, np.array([[0, 0, 15, 20], [70, 50, 79, 59]], np.float32))
    assert boxes.dtype == np.float32


def _write_fixture(root):
    write_wider_gt(parse_wider_gt(GT_TEXT), root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    for rel, (h, w) in IMAGE_SIZES.items():
        path = root / "WIDER_val" / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = np.zeros((h, w), np.uint8)  # a grey image: the loader must return three channels
        img[: h // 2] = 200
        cv2.imwrite(str(path), img)


def test_loader_on_wider_layout(tmp_path):
    _write_fixture(tmp_path)
    ds = WiderFace(tmp_path, "val")
    assert len(ds) == 4
    s0, s1, s2, s3 = list(ds)
    assert s0.image.shape == (64, 96, 3) and s0.image.dtype == np.uint8 and s0.image[0, 0, 0] == 200
    assert np.array_equal(s0.boxes, np.array([[10, 20, 40, 60], [50, 5, 58, 15]], np.float32))
    assert s1.boxes.shape == (0, 4) and s1.ignore.shape == (0,)
    assert np.array_equal(s2.boxes, np.array([[0, 0, 15, 20], [70, 50, 79, 59]], np.float32))
    assert np.array_equal(s2.ignore, [False, True])  # the invalid flag follows its box through clipping
    assert len(s3.boxes) == 0
    assert len(WiderFace(tmp_path, "val", limit=2)) == 2


def test_loader_errors(tmp_path):
    with pytest.raises(FpgagenError, match="wider_face_val_bbx_gt.txt"):
        WiderFace(tmp_path, "val")
    _write_fixture(tmp_path)
    (tmp_path / "WIDER_val" / "images" / "0--Parade" / "0_Parade_empty_7.jpg").unlink()
    with pytest.raises(FpgagenError, match="cannot read the image"):
        WiderFace(tmp_path, "val")[1]


# --- the synthetic set -------------------------------------------------------------------------------------
SMALL = SyntheticConfig(n_train=24, n_eval=10, train_size=128, eval_size=160, max_face=120, seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return synthetic.ensure(SMALL, base=tmp_path_factory.mktemp("synth"))


def test_split_is_disjoint_and_covers_the_faces():
    ids = synthetic.face_split(SyntheticConfig())
    assert len(ids["eval"]) == 20 and len(ids["train"]) == 80
    assert not set(ids["train"]) & set(ids["eval"])
    assert set(ids["train"]) | set(ids["eval"]) == set(range(100))
    assert not set(ids["train_nonfaces"]) & set(ids["eval_nonfaces"])
    assert np.array_equal(synthetic.face_split(SyntheticConfig())["eval"], ids["eval"])  # deterministic


def test_no_source_face_leaks_between_splits(small_set):
    train, val = synthetic.split_record(small_set, "train"), synthetic.split_record(small_set, "val")
    used_train = {f for faces in train["faces_per_image"].values() for f in faces}
    used_val = {f for faces in val["faces_per_image"].values() for f in faces}
    assert used_train and used_val
    assert used_train <= set(train["source_faces"]) and used_val <= set(val["source_faces"])
    assert not used_train & used_val
    assert not set(train["source_faces"]) & set(val["source_faces"])
    # and no held-out crop is a near copy of a training crop (lfw_subset holds no duplicates)
    faces, _ = sources.lfw()
    z = faces.reshape(100, -1).astype(np.float64)
    z = (z - z.mean(1, keepdims=True)) / np.linalg.norm(z - z.mean(1, keepdims=True), axis=1, keepdims=True)
    corr = z[sorted(used_val)] @ z[sorted(used_train)].T
    assert corr.max() < 0.95


def test_synthetic_set_reads_back_through_the_wider_loader(small_set):
    train, val = WiderFace(small_set, "train"), WiderFace(small_set, "val")
    assert len(train) == 24 and len(val) == 10
    assert train[0].image.shape == (128, 128, 3) and val[0].image.shape == (160, 160, 3)
    boxes = np.concatenate([s.boxes for s in val])
    assert len(boxes) > 5
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 159).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    counts = [len(r.boxes) for r in val.records]
    meta = synthetic.split_record(small_set, "val")
    assert counts == [len(meta["faces_per_image"][r.path]) for r in val.records]


def test_synthetic_is_deterministic_and_cached(small_set, tmp_path):
    again = synthetic.generate_split(tmp_path, "val", SMALL)
    a, b = WiderFace(small_set, "val"), WiderFace(again, "val")
    for i in range(len(a)):
        assert np.array_equal(a[i].image, b[i].image) and np.array_equal(a[i].boxes, b[i].boxes)
    stamp = (small_set / "synthetic-val.json").stat().st_mtime_ns
    assert synthetic.ensure(SMALL, base=small_set.parent) == small_set
    assert (small_set / "synthetic-val.json").stat().st_mtime_ns == stamp  # reused, not regenerated


def test_backgrounds_exclude_faces_and_held_out_photos():
    assert "camera" not in sources.BACKGROUNDS and "astronaut" not in sources.BACKGROUNDS
    photos = sources.demo_photos()
    assert [p.name for p in photos] == ["astronaut", "grace_hopper"]
    for p in photos:
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and len(p.faces) == 1


# --- transforms ----------------------------------------------------------------------------------------------
def test_letterbox_maps_boxes_both_ways():
    img = np.zeros((100, 200, 3), np.uint8)
    out, lb = letterbox(img, 416)
    assert out.shape == (416, 416, 3) and lb.scale == 416 / 200 and lb.dx == 0 and lb.dy == 104
    boxes = np.array([[10, 20, 50, 80], [0, 0, 199, 99]], np.float64)
    assert np.allclose(lb.to_original(lb.to_network(boxes)), boxes)
    assert np.allclose(lb.to_network(boxes)[1], [0, 104, 199 * 416 / 200, 104 + 99 * 416 / 200])


def test_augment_keeps_boxes_on_their_content():
    # a bright square on black: after any zoom/shift/flip its box must still enclose the bright pixels
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:110, 100:160] = 255
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out, boxes = augment(img, np.array([[100, 50, 160, 110]], np.float32), 160, rng)
        assert out.shape == (160, 160, 3) and out.dtype == np.uint8
        if len(boxes):
            x1, y1, x2, y2 = boxes[0]
            g = out.astype(int).sum(2)
            inside = g[int(y1) + 3:int(y2) - 2, int(x1) + 3:int(x2) - 2]
            assert inside.size and inside.min() > g.max() * 0.5 - 1  # the box sits on the square
