"""Unit tests for the procedural Fruits-360-style sample data (no Spark)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from fruitfeat.phone_photos import (
    ORIENTATION_TAG,
    generate_phone_photos,
    phone_photo,
    phone_size,
    shot_layout,
)
from fruitfeat.sample_data import (
    KNOWN_CLASSES,
    generate_sample_dataset,
    main,
    phone_subject,
)

SMALL = {"train_per_class": 3, "test_per_class": 2}
ONE_MP = phone_size(1)  # small phone photos keep these tests fast


def _sha256s(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jpg"))
    }


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def _fruit_mean_rgb(paths: list[Path]) -> np.ndarray:
    """Mean colour of pixels that are clearly not background."""
    pixels = []
    for p in paths:
        arr = _pixels(p).reshape(-1, 3)
        pixels.append(arr[arr.min(axis=1) < 200])
    fruit = np.concatenate(pixels).astype(np.float64)
    assert len(fruit) > 500, "expected a visible fruit, not an empty white frame"
    return fruit.mean(axis=0)


def test_default_classes_are_six_distinct_fruit() -> None:
    assert KNOWN_CLASSES == ("Apple Red", "Banana", "Lime", "Orange", "Blueberry", "Kiwi")


def test_layout_and_counts(tmp_path: Path) -> None:
    ds = generate_sample_dataset(tmp_path, train_per_class=4, test_per_class=2)

    assert ds.root == tmp_path
    assert ds.files == sorted(ds.files)
    assert len(ds.files) == len(KNOWN_CLASSES) * 6
    expected = {(s, c): n for c in KNOWN_CLASSES for s, n in (("Training", 4), ("Test", 2))}
    assert ds.counts() == expected
    for cls in KNOWN_CLASSES:
        train = sorted(p.name for p in (tmp_path / "Training" / cls).glob("*.jpg"))
        test = sorted(p.name for p in (tmp_path / "Test" / cls).glob("*.jpg"))
        assert train == [f"r_{i}_100.jpg" for i in range(4)]
        assert test == [f"{i}_100.jpg" for i in range(2)]
    assert set(ds.files) == set(tmp_path.rglob("*.jpg"))


def test_images_are_100px_rgb_jpegs_on_white(tmp_path: Path) -> None:
    ds = generate_sample_dataset(tmp_path, **SMALL)

    for path in ds.files:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (100, 100)
            arr = np.asarray(img)
        for y, x in ((0, 0), (0, 99), (99, 0), (99, 99)):
            assert arr[y, x].min() >= 235, f"{path}: corner {(y, x)} = {arr[y, x]}"
        # There is a fruit in the middle: a good share of pixels is non-white.
        non_white = (arr.min(axis=2) < 200).mean()
        assert 0.05 < non_white < 0.8, f"{path}: fruit covers {non_white:.2%}"


def test_image_size_is_respected(tmp_path: Path) -> None:
    ds = generate_sample_dataset(tmp_path, classes=["Kiwi"], train_per_class=1, test_per_class=1, image_size=64)

    assert [p.name for p in ds.files] == ["0_64.jpg", "r_0_64.jpg"]
    assert all(_pixels(p).shape == (64, 64, 3) for p in ds.files)


def test_generation_is_byte_identical(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate_sample_dataset(a, **SMALL)
    generate_sample_dataset(b, **SMALL)

    hashes_a = _sha256s(a)
    assert len(hashes_a) == len(KNOWN_CLASSES) * 5
    assert hashes_a == _sha256s(b)


def test_rerun_overwrites_identically_and_keeps_unrelated_files(tmp_path: Path) -> None:
    generate_sample_dataset(tmp_path, classes=["Lime"], **SMALL)
    before = _sha256s(tmp_path)
    keep = tmp_path / "Training" / "Lime" / "notes.txt"
    keep.write_text("mine")

    generate_sample_dataset(tmp_path, classes=["Lime"], **SMALL)

    assert _sha256s(tmp_path) == before
    assert keep.read_text() == "mine"


def test_seed_changes_images(tmp_path: Path) -> None:
    generate_sample_dataset(tmp_path / "s0", classes=["Orange"], seed=0, **SMALL)
    generate_sample_dataset(tmp_path / "s1", classes=["Orange"], seed=1, **SMALL)

    h0, h1 = _sha256s(tmp_path / "s0"), _sha256s(tmp_path / "s1")
    assert h0.keys() == h1.keys()
    assert all(h0[k] != h1[k] for k in h0)


def test_subset_reproduces_the_same_images_as_full_set(tmp_path: Path) -> None:
    generate_sample_dataset(tmp_path / "all", **SMALL)
    generate_sample_dataset(tmp_path / "one", classes=["Banana"], **SMALL)

    full = _sha256s(tmp_path / "all")
    subset = _sha256s(tmp_path / "one")
    assert subset and all(full[k] == v for k, v in subset.items())


def test_classes_are_visually_distinct(tmp_path: Path) -> None:
    ds = generate_sample_dataset(tmp_path, **SMALL)

    def mean(cls: str) -> np.ndarray:
        return _fruit_mean_rgb([p for p in ds.files if p.parent.name == cls])

    apple, lime, banana, blueberry, orange = (
        mean(c) for c in ("Apple Red", "Lime", "Banana", "Blueberry", "Orange")
    )
    assert apple[0] > lime[0] + 40
    assert lime[1] > apple[1] + 40
    assert apple[0] > apple[1] + 80 and apple[0] > apple[2] + 80  # red dominates
    assert lime[1] > lime[0] + 40 and lime[1] > lime[2] + 40  # green dominates
    assert banana[0] > 180 and banana[1] > 150 and banana[2] < 110  # yellow
    assert blueberry[2] > blueberry[0] + 30  # blue dominates
    assert orange[0] > orange[1] + 50 > orange[2] + 100  # orange: R > G > B


def test_training_and_test_images_differ(tmp_path: Path) -> None:
    ds = generate_sample_dataset(tmp_path, classes=["Apple Red"], train_per_class=4, test_per_class=4)

    root = tmp_path
    for i in range(4):
        train = _pixels(root / "Training" / "Apple Red" / f"r_{i}_100.jpg")
        test = _pixels(root / "Test" / "Apple Red" / f"{i}_100.jpg")
        assert np.abs(train - test).mean() > 2.0
    assert len(set(_sha256s(root).values())) == len(ds.files)  # no duplicates at all


def test_unknown_class_raises_and_lists_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Durian") as exc:
        generate_sample_dataset(tmp_path, classes=["Banana", "Durian"])
    assert "Apple Red" in str(exc.value) and "Kiwi" in str(exc.value)
    assert not list(tmp_path.rglob("*.jpg"))


def test_main_writes_files_and_returns_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    rc = main(["--out", str(out), "--train-per-class", "2", "--test-per-class", "1",
               "--classes", "Apple Red, Banana", "--seed", "3"])

    assert rc == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "Test/Apple Red/0_100.jpg", "Test/Banana/0_100.jpg",
        "Training/Apple Red/r_0_100.jpg", "Training/Apple Red/r_1_100.jpg",
        "Training/Banana/r_0_100.jpg", "Training/Banana/r_1_100.jpg",
    ]
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert "6 images" in line and "2 classes" in line and str(out) in line
    # The CLI is a thin wrapper: same arguments through the API give the same bytes.
    generate_sample_dataset(tmp_path / "api", classes=["Apple Red", "Banana"],
                            train_per_class=2, test_per_class=1, seed=3)
    assert _sha256s(out) == _sha256s(tmp_path / "api")


def test_main_rejects_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--classes", "Durian"])
    assert exc.value.code == 2


def _decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _orientation(img: Image.Image) -> int | None:
    return img.getexif().get(ORIENTATION_TAG)


def _small(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").reduce(8), dtype=np.float64)


def test_phone_size_keeps_the_phone_sensor_shape() -> None:
    assert phone_size() == (4032, 3024)
    assert phone_size(12, portrait=True) == (3024, 4032)
    assert phone_size(48) == (8064, 6048)
    assert ONE_MP == (1168, 880)
    with pytest.raises(ValueError):
        phone_size(0)


def test_phone_photo_is_byte_identical_for_the_same_seed() -> None:
    w, h = ONE_MP
    a = phone_photo(phone_subject("Lime"), [1, 2], width=w, height=h)
    b = phone_photo(phone_subject("Lime"), [1, 2], width=w, height=h)
    c = phone_photo(phone_subject("Lime"), [1, 3], width=w, height=h)

    assert a == b
    assert a != c
    assert phone_photo(phone_subject("Lime", seed=1), [1, 2], width=w, height=h) != a  # another fruit


@pytest.mark.parametrize("portrait", [False, True])
def test_phone_photo_is_a_fruit_on_a_lit_textured_surface(portrait: bool) -> None:
    w, h = phone_size(1, portrait=portrait)
    img = _decoded(phone_photo(phone_subject("Blueberry"), 3, width=w, height=h))

    assert img.format == "JPEG" and img.mode == "RGB"
    assert img.size == (w, h)
    assert _orientation(img) == 1
    px = np.asarray(img, dtype=np.int16)
    for corner in (px[:40, :40], px[:40, -40:], px[-40:, :40], px[-40:, -40:]):
        assert 120 < corner.mean() < 245  # a light surface, neither white nor dark
        assert corner.std() > 3.0  # texture and sensor noise, not a flat fill
    blue = px[..., 2] > px[..., 0] + 40  # the blueberry; the surface is near-neutral
    ys, xs = np.nonzero(blue)
    extent = max(np.ptp(xs), np.ptp(ys)) / min(w, h)
    assert 0.40 < extent < 0.75, f"fruit spans {extent:.2f} of the short side"
    assert abs(xs.mean() / w - 0.5) < 0.12 and abs(ys.mean() / h - 0.5) < 0.12


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_sideways_photo_is_upright_after_exif_transpose(orientation: int) -> None:
    w, h = phone_size(1, portrait=True)
    subject = phone_subject("Banana")
    upright = _decoded(phone_photo(subject, 5, width=w, height=h))
    stored = _decoded(phone_photo(subject, 5, width=w, height=h, orientation=orientation))

    assert _orientation(stored) == orientation
    assert stored.size == ((w, h) if orientation == 3 else (h, w))
    shown = ImageOps.exif_transpose(stored)
    assert shown.size == upright.size == (w, h)
    assert np.abs(_small(shown) - _small(upright)).mean() < 1.0  # only JPEG rounding differs
    if orientation == 3:  # same size, so check the stored pixels really are turned
        assert np.abs(_small(stored) - _small(upright)).mean() > 5.0


def test_shot_layout_alternates_shape_and_turns_every_nth() -> None:
    layouts = [shot_layout(i, 3) for i in range(7)]

    assert [p for p, _ in layouts] == [False, True, False, True, False, True, False]
    assert [o for _, o in layouts] == [1, 1, 6, 1, 1, 8, 1]
    assert {shot_layout(i, 0)[1] for i in range(7)} == {1}


def test_generate_phone_photos_layout_and_subset_reproducibility(tmp_path: Path) -> None:
    kw = {"per_split": {"Training": 3, "Test": 1}, "megapixels": 1, "seed": 4}
    files = generate_phone_photos(tmp_path / "a", [phone_subject(c, 4) for c in ("Apple Red", "Banana")], **kw)
    again = generate_phone_photos(tmp_path / "b", [phone_subject("Banana", 4)], **kw)

    land, port = ONE_MP, ONE_MP[::-1]
    expected = {  # stored size, EXIF orientation; Apple Red is class 0, Banana class 1
        "Training/Apple Red/r_phone_0.jpg": (land, 1), "Training/Apple Red/r_phone_1.jpg": (port, 1),
        "Training/Apple Red/r_phone_2.jpg": (port, 6), "Test/Apple Red/phone_0.jpg": (land, 1),
        "Training/Banana/r_phone_0.jpg": (port, 1), "Training/Banana/r_phone_1.jpg": (port, 6),
        "Training/Banana/r_phone_2.jpg": (port, 1), "Test/Banana/phone_0.jpg": (port, 1),
    }
    assert files == sorted(files)
    got = {}
    for f in files:
        with Image.open(f) as img:
            got[f.relative_to(tmp_path / "a").as_posix()] = (img.size, _orientation(img))
    assert got == expected
    banana = {k: v for k, v in _sha256s(tmp_path / "a").items() if "Banana" in k}
    assert len(again) == 4 and _sha256s(tmp_path / "b") == banana
    assert len(set(_sha256s(tmp_path / "a").values())) == len(files)


def test_sample_dataset_adds_12mp_phone_photos_and_keeps_thumbnails(tmp_path: Path) -> None:
    plain = generate_sample_dataset(tmp_path / "plain", classes=["Lime"], **SMALL)
    ds = generate_sample_dataset(tmp_path / "phone", classes=["Lime"], phone_per_class=1, **SMALL)

    phone = [f for f in ds.files if "phone" in f.name]
    assert [f.relative_to(ds.root).as_posix() for f in phone] == [
        "Test/Lime/phone_0.jpg", "Training/Lime/r_phone_0.jpg"]
    assert ds.files == sorted(ds.files) and len(ds.files) == len(plain.files) + 2
    assert ds.counts() == {("Training", "Lime"): 4, ("Test", "Lime"): 3}
    thumbs = {k: v for k, v in _sha256s(ds.root).items() if "phone" not in k}
    assert thumbs == _sha256s(plain.root)
    for f in phone:  # Lime is class 2: its first photo is landscape, stored sideways
        assert 1.5e6 < f.stat().st_size < 6e6
        with Image.open(f) as img:
            assert img.size == (3024, 4032) and _orientation(img) == 6
            assert ImageOps.exif_transpose(img).size == (4032, 3024)


def test_negative_phone_count_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        generate_sample_dataset(tmp_path, phone_per_class=-1)
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--phone-per-class", "-1"])
    assert exc.value.code == 2
    assert not list(tmp_path.rglob("*.jpg"))
