"""Image decoding for every mode PIL reads, the size limits, grayscale skin tone, and the pin that
8-bit RGB files (synthderm, HAM10000, ISIC 2018) decode exactly as before."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchbox.data import synthderm
from benchbox.data.csv_table import load_csv
from benchbox.data.ham10000 import load_ham10000
from benchbox.data.image_cache import MIN_SIDE, BadImageError, decode_resized
from benchbox.data.isic2018 import load_isic2018
from benchbox.data.ita import GRAYSCALE_REASON, ita_degrees, skin_tone
from benchbox.errors import BenchboxError
from benchbox.metrics import group_key, ita_light_dark
from benchbox.splits.build import make_split
from benchbox.splits.manifest import load_split, write_split

SIZE = 32
RNG = np.random.default_rng(7)
GRADIENT = np.tile(np.linspace(0, 255, 48).round().astype(np.uint8), (40, 1))  # 40 x 48, every level kind
COLOUR = RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)


def save(tmp_path: Path, name: str, image: Image.Image, **options) -> str:
    path = tmp_path / name
    image.save(path, **options)
    return str(path)


def decoded_rgb(array: np.ndarray, tmp_path: Path) -> np.ndarray:
    """What an 8-bit RGB PNG holding `array` decodes to: the reference for other modes."""
    return decode_resized(save(tmp_path, "reference.png", Image.fromarray(array, "RGB")), SIZE)


def gray3(array: np.ndarray) -> np.ndarray:
    return np.repeat(array[..., None], 3, axis=-1)


def today(path: str, size: int, is_mask: bool = False) -> np.ndarray:
    """The decoding before issue 18 (convert to RGB / L), which 8-bit RGB files must keep exactly."""
    with Image.open(path) as image:
        image.draft("L" if is_mask else "RGB", (size, size))
        image = image.convert("L" if is_mask else "RGB")
        width, height = image.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
        image = image.resize((new_w, new_h), resample, reducing_gap=None if is_mask else 2.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        array = np.asarray(image.crop((left, top, left + size, top + size)))
    return array > 127 if is_mask else array


# ---- 8-bit RGB is unchanged -------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return synthderm.generate(tmp_path_factory.mktemp("synth") / "d", n_lesions=12, size=64, seed=5, workers=1)


# sha256 of the decoded arrays (images at 64 and 32 px, then masks) of the 12-lesion dataset above,
# recorded with the decoding before issue 18, re-recorded when issue 19 put each site's light
# after the planted skin. It moves only if synthderm's bytes or libjpeg move.
SYNTH_DECODED_SHA256 = "5d4bbdfe35e0f6a4aa84f23c3818588f880de5f4c469730b7e3d427ad2dc0e1d"


def test_synthderm_decodes_byte_identically_to_before(synth):
    images = sorted((synth / "HAM10000_images_part_1").glob("*.jpg"))
    masks = sorted((synth / "HAM10000_segmentations_lesion_tschandl").glob("*.png"))
    assert len(images) >= 12 and len(masks) == len(images)
    digest = hashlib.sha256()
    for size in (64, 32):
        for path in images:
            array = decode_resized(str(path), size)
            np.testing.assert_array_equal(array, today(str(path), size))
            digest.update(array.tobytes())
    for path in masks:
        mask = decode_resized(str(path), 64, is_mask=True)
        np.testing.assert_array_equal(mask, today(str(path), 64, is_mask=True))
        digest.update(mask.tobytes())
    assert digest.hexdigest() == SYNTH_DECODED_SHA256


@pytest.mark.parametrize("sample", ["ham_sample", "isic_sample"])
def test_real_samples_decode_byte_identically_to_before(sample, request):
    root = request.getfixturevalue(sample)  # skips when ../shared/data lacks it
    images = sorted(root.rglob("*.jpg"))
    masks = sorted(root.rglob("*_segmentation.png"))
    assert images
    for path in images:
        for size in (64, 224):
            np.testing.assert_array_equal(decode_resized(str(path), size), today(str(path), size), err_msg=str(path))
    for path in masks:
        np.testing.assert_array_equal(decode_resized(str(path), 224, is_mask=True), today(str(path), 224, is_mask=True))


def test_opaque_alpha_and_palette_decode_like_rgb(tmp_path):
    expected = decoded_rgb(COLOUR, tmp_path)
    rgba = np.concatenate([COLOUR, np.full((40, 48, 1), 255, np.uint8)], axis=-1)
    opaque = save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(decode_resized(opaque, SIZE), expected)
    palette = Image.fromarray(COLOUR, "RGB").quantize(256)
    expected = decoded_rgb(np.asarray(palette.convert("RGB")), tmp_path)
    np.testing.assert_array_equal(decode_resized(save(tmp_path, "p.png", palette), SIZE), expected)


# ---- other modes -------------------------------------------------------------------------------


def test_16_bit_grayscale_png_is_scaled_by_its_depth_not_clipped_to_white(tmp_path):
    """The reported case: an I;16 PNG decoded all-white. 8-bit levels stored as v * 257 decode back to v."""
    path = save(tmp_path, "g16.png", Image.fromarray(GRADIENT.astype(np.uint16) * 257))
    assert Image.open(path).mode == "I;16"
    decoded = decode_resized(path, SIZE)
    np.testing.assert_array_equal(decoded, decoded_rgb(gray3(GRADIENT), tmp_path))
    assert decoded.min() < 30 and decoded.max() > 225 and 0.4 < decoded.mean() / 255 < 0.6  # not all 255


def test_big_endian_16_bit_tiff_and_16_bit_pgm(tmp_path):
    expected = decoded_rgb(gray3(GRADIENT), tmp_path)
    big = Image.frombytes("I;16B", (48, 40), (GRADIENT.astype(">u2") * 257).tobytes())
    tiff = save(tmp_path, "b16.tif", big)
    assert Image.open(tiff).mode == "I;16B"
    np.testing.assert_array_equal(decode_resized(tiff, SIZE), expected)
    pgm = save(tmp_path, "g16.pgm", Image.fromarray(GRADIENT.astype(np.uint16) * 257))
    assert Image.open(pgm).mode == "I"  # no declared depth: 16-bit by its values
    np.testing.assert_array_equal(decode_resized(pgm, SIZE), expected)


def test_32_bit_tiff_is_scaled_by_its_declared_32_bits(tmp_path):
    half = GRADIENT // 2  # 0..128: 128 * (2**32 - 1) / 255 still fits PIL's signed 32-bit mode I
    path = save(tmp_path, "i32.tif", Image.fromarray(half.astype(np.int64).astype(np.int32) * 16843009))
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(decode_resized(path, SIZE), decoded_rgb(gray3(half), tmp_path))


def test_float_image_is_read_as_0_to_1_and_refused_outside(tmp_path):
    path = save(tmp_path, "f.tif", Image.fromarray(GRADIENT.astype(np.float32) / 255))
    np.testing.assert_array_equal(decode_resized(path, SIZE), decoded_rgb(gray3(GRADIENT), tmp_path))
    wide = save(tmp_path, "wide.tif", Image.fromarray(GRADIENT.astype(np.float32) * 2))
    with pytest.raises(BadImageError, match=r"wide\.tif: it is a floating-point image with values from 0 to 510.*"
                       r"--on-bad-image skip"):
        decode_resized(wide, SIZE)


def test_bilevel_grayscale_and_ycbcr_modes(tmp_path):
    bilevel = Image.fromarray(GRADIENT > 127)
    assert bilevel.mode == "1"
    expected = decoded_rgb(gray3((GRADIENT > 127) * np.uint8(255)), tmp_path)
    np.testing.assert_array_equal(decode_resized(save(tmp_path, "b.png", bilevel), SIZE), expected)
    np.testing.assert_array_equal(
        decode_resized(save(tmp_path, "l.png", Image.fromarray(GRADIENT)), SIZE), decoded_rgb(gray3(GRADIENT), tmp_path)
    )
    ycbcr = Image.fromarray(COLOUR, "RGB").convert("YCbCr")
    decoded = decode_resized(save(tmp_path, "y.tif", ycbcr), SIZE)
    np.testing.assert_array_equal(decoded, decoded_rgb(np.asarray(ycbcr.convert("RGB")), tmp_path))


def test_cmyk_uses_pils_conversion(tmp_path):
    cyan = Image.new("CMYK", (40, 40), (255, 0, 0, 0))
    for name in ("c.tif", "c.jpg"):
        decoded = decode_resized(save(tmp_path, name, cyan), SIZE)
        np.testing.assert_allclose(decoded.reshape(-1, 3).mean(axis=0), (0, 255, 255), atol=2)


def test_transparency_is_composited_on_black(tmp_path):
    """Alpha 0 gives black whatever colour the encoder left there; half alpha halves the colour."""
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :24, 3] = 0  # left half transparent
    rgba[:, 24:, 3] = 128
    decoded = decode_resized(save(tmp_path, "t.png", Image.fromarray(rgba, "RGBA")), 40)
    np.testing.assert_array_equal(decoded[:, :15], 0)
    np.testing.assert_allclose(decoded[:, 30:], np.broadcast_to([100, 50, 25], decoded[:, 30:].shape), atol=1)
    alpha = np.where(np.arange(48) < 24, 0, 255).astype(np.uint8)[None].repeat(40, 0)
    la = np.stack([np.full((40, 48), 200, np.uint8), alpha], axis=-1)
    decoded = decode_resized(save(tmp_path, "la.png", Image.fromarray(la, "LA")), 40)
    assert (decoded[:, :15] == 0).all() and (decoded[:, 30:] == 200).all()


def test_palette_transparency_is_composited_on_black(tmp_path):
    indices = np.where(np.arange(48) < 24, 0, 1).astype(np.uint8)[None].repeat(40, 0)
    palette = Image.fromarray(indices, "P")
    palette.putpalette([255, 255, 255, 10, 200, 30] + [0] * 762)
    decoded = decode_resized(save(tmp_path, "pt.png", palette, transparency=0), 40)
    assert (decoded[:, :15] == 0).all() and (decoded[:, 30:] == (10, 200, 30)).all()


def test_unsupported_mode_is_refused_by_name(tmp_path):
    path = save(tmp_path, "lab.tif", Image.new("LAB", (40, 40), (128, 140, 150)))
    with pytest.raises(BadImageError, match=r"cannot read image .*lab\.tif: its colour mode 'LAB' is not one benchbox "
                       r"decodes .*Save it as an 8-bit RGB PNG or JPEG, or pass --on-bad-image skip"):
        decode_resized(path, SIZE)


# ---- masks -------------------------------------------------------------------------------------


DISC = (np.hypot(*np.mgrid[-20:20, -24:24]) < 12)


@pytest.mark.parametrize(
    "levels,mode",
    [((0, 255), "L"), ((0, 1), "L"), ((0, 65535), "I;16"), ((0, 255), "I;16"), ((0, 1), "I;16")],
    ids=["8-bit 0/255", "8-bit 0/1", "16-bit 0/65535", "16-bit holding 0/255", "16-bit 0/1"],
)
def test_two_level_masks_mark_every_nonzero_pixel(tmp_path, levels, mode):
    values = np.where(DISC, levels[1], levels[0]).astype(np.uint16 if mode == "I;16" else np.uint8)
    mask = decode_resized(save(tmp_path, "m.png", Image.fromarray(values)), 40, is_mask=True)
    expected = decode_resized(save(tmp_path, "ref.png", Image.fromarray(DISC.astype(np.uint8) * 255)), 40, is_mask=True)
    assert mask.dtype == bool and mask.sum() > 300
    np.testing.assert_array_equal(mask, expected)


def test_graded_masks_are_cut_at_half_their_range(tmp_path):
    eight = decode_resized(save(tmp_path, "g8.png", Image.fromarray(GRADIENT)), 40, is_mask=True)
    np.testing.assert_array_equal(eight, today(str(tmp_path / "g8.png"), 40, is_mask=True))  # > 127 as before
    path = save(tmp_path, "g16.png", Image.fromarray(GRADIENT.astype(np.uint16) * 257))
    sixteen = decode_resized(path, 40, is_mask=True)
    np.testing.assert_array_equal(sixteen, eight)
    assert 0.3 < eight.mean() < 0.7


# ---- size limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (MIN_SIDE - 1, 48)])
def test_images_below_the_minimum_side_are_bad(tmp_path, shape):
    path = save(tmp_path, "tiny.png", Image.fromarray(COLOUR[: shape[0], : shape[1]].copy()))
    with pytest.raises(BadImageError, match=rf"tiny\.png: it is {shape[1]}x{shape[0]} px, below the minimum of "
                       rf"{MIN_SIDE} px per side.*Replace it with the full-size image, or pass --on-bad-image skip"):
        decode_resized(path, SIZE)
    smallest = save(tmp_path, "ok.png", Image.fromarray(COLOUR[:MIN_SIDE, :MIN_SIDE].copy()))
    assert decode_resized(smallest, SIZE).shape == (SIZE, SIZE, 3)


def huge_png_header(path: Path, width: int = 14000, height: int = 14000) -> str:
    """A PNG that declares width x height RGB (its pixel data is cut short: PIL refuses it at open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)))
    return str(path)


def test_a_14000_px_square_image_is_a_bad_image_named_with_the_limit(tmp_path):
    with pytest.raises(BadImageError, match=r"cannot read image .*huge\.png: it has more pixels than the limit of "
                       r"89,478,485 .*196000000 pixels.*Downscale it.*--on-bad-image skip"):
        decode_resized(huge_png_header(tmp_path / "huge.png"), SIZE)


def test_images_between_pils_warning_and_error_limits_are_bad_too(tmp_path, monkeypatch):
    path = save(tmp_path, "big.png", Image.fromarray(COLOUR))  # 1,920 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # PIL only warns up to 3,000
    with pytest.raises(BadImageError, match=r"big\.png: it has more pixels than the limit of 1,500"):
        decode_resized(path, SIZE)


def replace_image(root: Path, image_id: str, image: Image.Image | None = None, raw: str | None = None,
                  format: str = "PNG") -> Path:
    """Swap one image of a tiny HAM layout for another file named .png (PIL reads it by its content)."""
    folder = root / "HAM10000_images_part_1"
    (folder / f"{image_id}.jpg").unlink()
    target = folder / f"{image_id}.png"
    if raw is not None:
        target.write_bytes(Path(raw).read_bytes())
    else:
        image.save(target, format=format)
    return target


def test_on_bad_image_governs_tiny_huge_and_unsupported_images(make_ham_layout, tmp_path):
    root = make_ham_layout(["nv", "mel", "bcc", "nv"], masks=False)
    replace_image(root, "IMG_0000001", Image.fromarray(COLOUR[:1, :1].copy()))
    replace_image(root, "IMG_0000002", raw=huge_png_header(tmp_path / "huge.png"))
    replace_image(root, "IMG_0000003", Image.new("LAB", (40, 30)), format="TIFF")
    with pytest.raises(BenchboxError, match=r"cannot read image .*IMG_0000001\.png: it is 1x1 px.*--on-bad-image skip"):
        load_ham10000(root, progress=False)
    dataset = load_ham10000(root, on_bad_image="skip", progress=False)
    assert list(dataset.manifest["image_id"]) == ["IMG_0000000"]
    note = next(n for n in dataset.notes if n.startswith("skipped"))
    assert note.startswith("skipped 3 unreadable image(s): IMG_0000001 (")
    assert "1x1 px" in note and "decompression-bomb" in note and "colour mode 'LAB'" in note


# ---- grayscale images have no skin tone ---------------------------------------------------------


def test_grayscale_has_no_skin_tone_and_colour_keeps_its_value():
    gray = np.broadcast_to(np.uint8(200), (64, 64, 3)).copy()
    assert skin_tone(gray) == (pytest.approx(np.nan, nan_ok=True), GRAYSCALE_REASON)
    noisy = gray.copy()
    noisy[..., 2] -= RNG.integers(0, 3, (64, 64), dtype=np.uint8)  # recompression noise of a gray picture
    assert np.isnan(ita_degrees(noisy))
    skin = np.broadcast_to(np.array([224, 180, 160], np.uint8), (64, 64, 3)).copy()
    value, reason = skin_tone(skin)
    assert reason == "" and 30 < value < 60


def test_grayscale_images_of_a_dataset_get_nan_ita_missing_in_subgroups(make_ham_layout):
    """The reported case: a grayscale JPEG got ITA 90 ("very_light"). Also a 16-bit grayscale PNG."""
    root = make_ham_layout(["nv", "mel", "bcc"])
    Image.fromarray(GRADIENT[:30, :40].copy()).save(root / "HAM10000_images_part_1" / "IMG_0000001.jpg")
    replace_image(root, "IMG_0000002", Image.fromarray(GRADIENT[:30, :40].astype(np.uint16) * 257))
    manifest = load_ham10000(root, progress=False).manifest.set_index("image_id")
    assert np.isnan(manifest.loc[["IMG_0000001", "IMG_0000002"], "ita"]).all()
    assert manifest.loc[["IMG_0000001", "IMG_0000002"], "ita_category"].tolist() == ["", ""]
    assert np.isfinite(manifest.loc["IMG_0000000", "ita"]) and manifest.loc["IMG_0000000", "ita_category"] != ""
    assert [group_key(v) for v in manifest["ita_category"]][1:] == [None, None]
    assert ita_light_dark(manifest["ita"].to_numpy(), 28).tolist()[1:] == ["unknown", "unknown"]
    again = load_ham10000(root, progress=False)  # from the skin-tone cache: same values and the same note
    note = (f"no skin tone for 2 image(s) (e.g. IMG_0000001, IMG_0000002): {GRAYSCALE_REASON}; their ita is NaN and "
            "ita_category empty, so the skin-tone subgroups leave them out")
    assert note in again.notes
    np.testing.assert_array_equal(again.manifest["ita"].to_numpy(), manifest["ita"].to_numpy())


# ---- empty image ids ---------------------------------------------------------------------------


def test_empty_image_id_is_refused_at_load_naming_file_and_line(make_ham_layout, tmp_path):
    root = make_ham_layout(["nv", "mel", "bcc"])
    metadata = root / "HAM10000_metadata.csv"
    table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    table.loc[1, "image_id"] = " "
    table.to_csv(metadata, index=False)
    with pytest.raises(BenchboxError, match=r"HAM10000_metadata\.csv: line 3, column 'image_id' is empty \(1 row\(s\) "
                       r"affected\)"):
        load_ham10000(root, only_present=True, progress=False)
    listing = tmp_path / "list.csv"
    pd.DataFrame({"image_id": ["a", ""], "path": ["x.jpg", "y.jpg"], "dx": ["nv", "mel"]}).to_csv(listing, index=False)
    with pytest.raises(BenchboxError, match=r"list\.csv: line 3, column 'image_id' is empty"):
        load_csv(listing, progress=False)


def test_empty_isic_image_is_refused(tmp_path):
    truth = tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv"
    truth.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_1,1.0,0,0,0,0,0,0\n,0,1.0,0,0,0,0,0\n")
    with pytest.raises(BenchboxError, match=r"GroundTruth\.csv: line 3, column 'image' is empty"):
        load_isic2018(tmp_path, only_present=True, progress=False)


def test_a_split_of_a_dataset_with_skipped_images_advises_the_cli_option(make_ham_layout):
    """The split refuses rows for images `--on-bad-image skip` left out and names --only-present, the option
    that makes the run drop them (it passes dataset_restricted=True), not the Python parameter."""
    root = make_ham_layout(["nv"] * 12 + ["mel"] * 8, masks=False)
    table, info = make_split(load_ham10000(root, progress=False).manifest, seed=0, progress=False)
    path = root / "split.csv"
    write_split(table, path, info, "ham10000")
    replace_image(root, "IMG_0000004", Image.fromarray(COLOUR[:2, :2].copy()))
    skipped = load_ham10000(root, on_bad_image="skip", progress=False)
    with pytest.raises(BenchboxError, match=r"1 image ids in the split are not in the dataset \(e\.g\. IMG_0000004\).*"
                       r"left out by --on-bad-image skip\), pass --only-present and those rows are dropped") as refused:
        load_split(path, skipped.manifest, skipped.hash)
    assert "dataset_restricted" not in str(refused.value)
    restricted = load_split(path, skipped.manifest, skipped.hash, dataset_restricted=True)
    assert restricted.n_dropped == 1 and "IMG_0000004" not in set(restricted.table["image_id"])
