from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage, stats
from skimage.color import deltaE_cie76, rgb2lab

from benchbox.data import synthderm
from benchbox.data.ita import _LINEAR_OF_UINT8 as _LINEAR
from benchbox.data.ita import RGB_TO_XYZ
from benchbox.errors import BenchboxError
from benchbox.labels import CLASSES, MALIGNANT_CLASSES

SHARED_METADATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ham10000_sample" / "HAM10000_metadata.csv"
HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"
HAM_LOCALIZATIONS = {
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand", "lower extremity",
    "neck", "scalp", "trunk", "unknown", "upper extremity",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A small dataset: 70 lesions at 64 px, rendered in one process."""
    return synthderm.generate(tmp_path_factory.mktemp("synth") / "small", n_lesions=70, size=64, seed=3, workers=1)


@pytest.fixture(scope="module")
def plans() -> list[synthderm.LesionPlan]:
    """Plans (no images) of a 3,000-lesion dataset, for rates and shares."""
    return synthderm.plan_dataset(3000, 0, synthderm.artefact_probabilities(None))


def read(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metadata = pd.read_csv(root / "HAM10000_metadata.csv", keep_default_na=False)
    truth = pd.read_csv(root / "synthderm_truth.csv").set_index("image_id").loc[metadata["image_id"]]
    return metadata, truth


def load(root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(root / "HAM10000_images_part_1" / f"{image_id}.jpg"))
    mask = np.asarray(Image.open(root / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png"))
    return image, mask


def skin_pixels(mask: np.ndarray) -> np.ndarray:
    """Outside the mask (dilated by 3 px) and inside 90% of the inscribed circle (no field stop)."""
    size = mask.shape[0]
    yy, xx = np.mgrid[:size, :size]
    inside = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2) < 0.9 * size / 2
    return inside & ~ndimage.binary_dilation(mask > 0, iterations=3)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_ids_and_columns_are_ham10000s(small):
    header = (small / "HAM10000_metadata.csv").read_text().splitlines()[0]
    assert header == HAM_HEADER
    metadata, truth = read(small)
    assert sorted(p.name for p in small.iterdir()) == [
        "HAM10000_images_part_1", "HAM10000_metadata.csv", "HAM10000_segmentations_lesion_tschandl", "synthderm_truth.csv",
    ]
    ids = metadata["image_id"]
    assert ids.is_unique and ids.str.fullmatch(r"SYN_\d{7}").all()
    assert metadata["lesion_id"].str.fullmatch(r"SYNL_\d{7}").all()
    assert sorted(p.name for p in (small / "HAM10000_images_part_1").iterdir()) == sorted(ids + ".jpg")
    masks = small / "HAM10000_segmentations_lesion_tschandl"
    assert sorted(p.name for p in masks.iterdir()) == sorted(ids + "_segmentation.png")
    assert not any(re.search(r"ISIC_|HAM_", p.name) for p in small.rglob("*"))
    assert set(metadata["dx"]) == set(CLASSES)
    assert set(metadata["dx_type"]) <= {"histo", "follow_up", "consensus", "confocal"}
    assert set(metadata["sex"]) <= {"male", "female", "unknown"}
    assert set(metadata["localization"]) <= HAM_LOCALIZATIONS
    assert set(metadata["dataset"]) <= {site.name for site in synthderm.SITES}
    ages = pd.to_numeric(metadata["age"].replace("", np.nan))
    assert ((ages.dropna() % 5 == 0) & ages.dropna().between(0, 85)).all()
    # Lesion-level metadata is shared by a lesion's images, as in HAM10000.
    per_lesion = metadata.assign(true_lesion=truth["true_lesion_id"].values).groupby("true_lesion")
    assert (per_lesion[["dx", "age", "sex", "localization", "dx_type", "dataset"]].nunique() == 1).all().all()


@pytest.mark.skipif(not SHARED_METADATA.exists(), reason="../shared/data is absent")
def test_columns_and_values_match_the_real_release(small):
    real = pd.read_csv(SHARED_METADATA, keep_default_na=False)
    metadata, _ = read(small)
    assert list(metadata.columns) == list(real.columns)
    for column in ("dx", "dx_type", "sex", "localization"):
        assert set(metadata[column]) <= set(real[column])


def test_images_and_masks_are_well_formed(small):
    metadata, _ = read(small)
    for image_id in metadata["image_id"]:
        image, mask = load(small, image_id)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}


def test_masks_locate_the_lesion(small):
    """The colour inside the (eroded) mask departs from the skin far more than the skin varies."""
    metadata, truth = read(small)
    ratios = []
    for image_id in metadata["image_id"]:
        image, mask = load(small, image_id)
        lab = rgb2lab(image)
        skin = skin_pixels(mask)
        reference = np.median(lab[skin], axis=0)
        distance = deltaE_cie76(lab, reference[None, None, :])
        core = ndimage.binary_erosion(mask > 0, iterations=2)
        if core.any():
            ratios.append(np.median(distance[core]) / np.median(distance[skin]))
    assert len(ratios) >= 0.9 * len(metadata)
    assert np.mean(np.array(ratios) > 2) > 0.9


def test_masks_are_tight(small):
    """The 2 px just inside the mask already differ from skin; the 2 px just outside do not."""
    metadata, _ = read(small)
    inner, outer = [], []
    for image_id in metadata["image_id"]:
        image, mask = load(small, image_id)
        mask = mask > 0
        lab = rgb2lab(image)
        distance = deltaE_cie76(lab, np.median(lab[skin_pixels(mask)], axis=0)[None, None, :])
        inner.append(np.median(distance[mask & ~ndimage.binary_erosion(mask, iterations=2)]))
        outer.append(np.median(distance[ndimage.binary_dilation(mask, iterations=2) & ~mask]))
    assert np.median(inner) > 3 * np.median(outer)


def test_files_are_the_rendered_model(small):
    """The PNG mask is exactly render()'s mask and the JPEG decodes close to render()'s image (PSNR)."""
    plans = synthderm.plan_dataset(70, 3, synthderm.artefact_probabilities(None))
    plan = next(p for p in plans if len(p.views) > 1)
    look = synthderm.lesion_appearance(3, plan)
    for view in plan.views:
        image, mask = synthderm.render(3, plan, look, view, 64)
        stored_image, stored_mask = load(small, view.image_id)
        np.testing.assert_array_equal(stored_mask > 0, mask)
        mse = np.mean((stored_image.astype(float) - image.astype(float)) ** 2)
        assert 10 * np.log10(255**2 / mse) > 32  # JPEG at quality 90; another image scores < 25


def test_same_arguments_give_identical_bytes_in_any_number_of_processes(tmp_path):
    one = synthderm.generate(tmp_path / "one", n_lesions=16, size=40, seed=5, workers=1)
    two = synthderm.generate(tmp_path / "two", n_lesions=16, size=40, seed=5, workers=2)
    other = synthderm.generate(tmp_path / "other", n_lesions=16, size=40, seed=6, workers=1)
    assert tree_digest(one) == tree_digest(two)
    assert len(tree_digest(one)) == 2 + 2 * (len((one / "HAM10000_metadata.csv").read_text().splitlines()) - 1)
    assert tree_digest(one)["HAM10000_metadata.csv"] != tree_digest(other)["HAM10000_metadata.csv"]


def test_class_counts_follow_ham10000_priors_with_a_floor(plans):
    # Hand-worked for 1,500 lesions: floor ceil(0.04 * 1500) = 60; mel round(166.65) = 167,
    # bkl round(164.55) = 165, bcc round(76.95) = 77, akiec/df/vasc raised to 60; nv the rest.
    assert synthderm.class_counts(1500) == {"akiec": 60, "bcc": 77, "bkl": 165, "df": 60, "mel": 167, "nv": 911, "vasc": 60}
    lesions = pd.Series([p.dx for p in plans]).value_counts(normalize=True)
    for dx, prior in {"mel": 0.1111, "bkl": 0.1097, "bcc": 0.0513}.items():
        assert lesions[dx] == pytest.approx(prior, abs=0.001)
    for dx in ("akiec", "df", "vasc"):
        assert lesions[dx] == pytest.approx(0.04, abs=0.001)
    assert lesions.idxmax() == "nv" and lesions["nv"] > 0.6


def test_metadata_is_shaped_like_ham10000(plans):
    lesions = pd.DataFrame(
        [(p.dx, p.age, p.sex, p.dx_type, p.localization) for p in plans], columns=["dx", "age", "sex", "dx_type", "loc"]
    )
    age = lesions.groupby("dx")["age"].mean()
    assert age["nv"] == pytest.approx(46.5, abs=2.5) and age["bcc"] == pytest.approx(66.8, abs=4)
    assert age["nv"] < age["mel"] < age["bcc"]
    assert (lesions.loc[lesions["dx"] == "mel", "dx_type"] == "histo").all()
    nv_types = lesions.loc[lesions["dx"] == "nv", "dx_type"].value_counts(normalize=True)
    assert nv_types["follow_up"] == pytest.approx(0.553, abs=0.04)
    assert lesions.loc[lesions["dx"] == "akiec", "loc"].value_counts().idxmax() == "face"
    assert 0 < (lesions["sex"] == "unknown").sum() < 0.02 * len(lesions)
    assert 0 < lesions["age"].isna().sum() < 0.02 * len(lesions)


def neutral_lab(image: np.ndarray, site: str) -> np.ndarray:
    """CIELAB (skimage) of an image with its site's light colour divided out."""
    light = np.array(synthderm.SITE_BY_NAME[site].light)
    linear = np.clip(_LINEAR[image] / (light / (light @ RGB_TO_XYZ[1])), 0, 1)
    return rgb2lab(np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055))


def test_planted_ita_is_the_skin_under_neutral_light(small):
    """The planted ITA is measured once the site's light is divided out, and is not without: the
    sites bias the ITA of the pixels as they are (benchbox.data.ita corrects it, test_ita_correction.py)."""
    metadata, truth = read(small)
    errors, raw = [], []
    for image_id, site in zip(metadata["image_id"], metadata["dataset"]):
        image, mask = load(small, image_id)
        for lab, out in ((neutral_lab(image, site)[skin_pixels(mask)], errors), (rgb2lab(image)[skin_pixels(mask)], raw)):
            out.append(np.median(np.degrees(np.arctan2(lab[:, 0] - 50, lab[:, 2]))) - truth.loc[image_id, "ita"])
    assert np.max(np.abs(errors)) < 5.0  # the worst are images with many dark hairs on the skin
    assert np.median(np.abs(errors)) < 1.5
    raw_by_site = pd.Series(raw).groupby(metadata["dataset"].to_numpy()).median()
    assert raw_by_site["synth_modern"] > 15 and raw_by_site["synth_video"] < -3  # bluish and reddish lights


def test_skin_tones_span_every_ita_category(plans):
    ita = np.array([view.ita for p in plans for view in p.views])
    bins = np.histogram(ita, bins=[-90, -30, 10, 28, 41, 55, 90])[0] / len(ita)
    assert (bins > 0.05).all()
    assert ita.min() < -45 and ita.max() > 65


def test_lesions_have_lower_contrast_on_darker_skin(small):
    """Optical density -log(lesion / skin) of green light: absorption alone would keep it equal on
    every skin tone, so a lower density on dark skin is the planted contrast reduction."""
    metadata, truth = read(small)
    density = {}
    for image_id in metadata["image_id"]:
        image, mask = load(small, image_id)
        core = ndimage.binary_erosion(mask > 0, iterations=2)
        if core.any():
            green = (image[..., 1] / 255.0) ** 2.2
            density[image_id] = -np.log(np.median(green[core]) / np.median(green[skin_pixels(mask)]))
    density = pd.Series(density)
    ita = truth.loc[density.index, "ita"]
    assert density[ita < 10].median() < 0.8 * density[ita > 41].median()


def artefact_pixels(image: np.ndarray, mask: np.ndarray, site: str) -> dict[str, int]:
    """Counts of pixels that look like ink (purple off the lesion) or a ruler (bright grey edge band)
    under neutral light: the site's light colour is divided out first."""
    lab = neutral_lab(image, site)
    size = mask.shape[0]
    yy, xx = np.mgrid[:size, :size]
    edge = np.minimum(np.minimum(yy, xx), np.minimum(size - 1 - yy, size - 1 - xx)) < 0.13 * size
    off_lesion = ~ndimage.binary_dilation(mask > 0, iterations=2)
    purple = (lab[..., 1] - lab[..., 2] > 20) & off_lesion
    grey_bright = (lab[..., 0] > 80) & (np.hypot(lab[..., 1], lab[..., 2]) < 10) & edge
    return {"ink": int(purple.sum()), "ruler": int(grey_bright.sum())}


def test_artefact_correlation_plants_visible_artefacts_on_malignant_images(tmp_path):
    root = synthderm.generate(tmp_path / "shortcut", n_lesions=40, size=64, seed=4, artefact_correlation=1.0, workers=1)
    metadata, truth = read(root)
    malignant = metadata["dx"].isin(MALIGNANT_CLASSES).values
    for artefact in ("hair", "ruler", "ink"):
        np.testing.assert_array_equal(truth[artefact].values, malignant)
    seen = pd.DataFrame([artefact_pixels(*load(root, i), site) for i, site in zip(metadata["image_id"], metadata["dataset"])])
    assert (seen.loc[~malignant] == 0).all().all()
    assert (seen.loc[malignant, "ruler"] > 20).all()
    assert (seen.loc[malignant, "ink"] > 0).mean() > 0.8


def test_default_artefacts_are_independent_of_class(plans):
    views = pd.DataFrame(
        [(p.dx in MALIGNANT_CLASSES, v.hair, v.ruler, v.ink) for p in plans for v in p.views],
        columns=["malignant", "hair", "ruler", "ink"],
    )
    for artefact, rate in synthderm.ARTEFACT_RATE.items():
        table = pd.crosstab(views["malignant"], views[artefact])
        assert stats.fisher_exact(table.values).pvalue > 0.01
        assert views[artefact].mean() == pytest.approx(rate, abs=0.02)


def test_artefact_correlation_by_class_and_bad_values():
    probs = synthderm.artefact_probabilities({"ink": {"mel": 0.9}})
    assert probs[CLASSES.index("mel"), synthderm.ARTEFACTS.index("ink")] == 0.9
    assert probs[CLASSES.index("nv"), synthderm.ARTEFACTS.index("ink")] == synthderm.ARTEFACT_RATE["ink"]
    half = synthderm.artefact_probabilities(0.5)
    assert half[CLASSES.index("bcc"), 1] == pytest.approx(0.12 + 0.5 * 0.88)
    assert half[CLASSES.index("bkl"), 1] == pytest.approx(0.06)
    for bad in (1.5, {"glare": {"mel": 0.5}}, {"ink": {"melanoma": 0.5}}, {"ink": {"mel": 2}}):
        with pytest.raises(BenchboxError, match="artefact_correlation"):
            synthderm.artefact_probabilities(bad)


def test_lesions_have_several_images_and_some_are_relabelled(small):
    metadata, truth = read(small)
    images_per_lesion = truth.groupby("true_lesion_id").size()
    assert (images_per_lesion > 1).any()
    relabelled = truth[truth["relabelled"]]
    assert len(relabelled) > 0
    assert (relabelled["lesion_id"] != relabelled["true_lesion_id"]).all()
    assert (truth.loc[~truth["relabelled"], "lesion_id"] == truth.loc[~truth["relabelled"], "true_lesion_id"]).all()
    assert metadata["lesion_id"].value_counts()[relabelled["lesion_id"]].eq(1).all()
    # The relabelled image shows the same lesion: its mask area scales with the planted scale.
    for image_id, row in relabelled.iterrows():
        sibling_id = truth[(truth["true_lesion_id"] == row["true_lesion_id"]) & ~truth["relabelled"]].index[0]
        area = (load(small, image_id)[1] > 0).sum() / (load(small, sibling_id)[1] > 0).sum()
        assert area == pytest.approx((row["scale"] / truth.loc[sibling_id, "scale"]) ** 2, rel=0.15)


def test_multi_image_and_relabel_rates_follow_ham10000(plans):
    multi = pd.Series({p.index: len(p.views) > 1 for p in plans})
    dx = pd.Series({p.index: p.dx for p in plans})
    share = multi.groupby(dx).mean()
    assert share["mel"] == pytest.approx(0.625, abs=0.07) and share["nv"] == pytest.approx(0.183, abs=0.04)
    relabelled = sum(v.relabelled for p in plans for v in p.views)
    assert relabelled == pytest.approx(synthderm.RELABEL_SHARE * multi.sum(), rel=0.3)


def test_refuses_bad_arguments_and_leaves_nothing_behind(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(BenchboxError, match="not empty"):
        synthderm.generate(tmp_path / "full", n_lesions=10, size=32, workers=1)
    with pytest.raises(BenchboxError, match="n_lesions"):
        synthderm.generate(tmp_path / "few", n_lesions=3, workers=1)
    with pytest.raises(BenchboxError, match="size"):
        synthderm.generate(tmp_path / "tiny", size=16, workers=1)

    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real_render(*args, **kwargs)

    real_render = synthderm.render
    monkeypatch.setattr(synthderm, "render", failing_render)
    with pytest.raises(RuntimeError, match="killed"):
        synthderm.generate(tmp_path / "half", n_lesions=10, size=32, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def colour_statistics(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: mean, sd and 10/50/90th percentiles of RGB inside the mask, mean and sd outside,
    and the inside-outside difference of means; with the classes and true lesion ids."""
    metadata, truth = read(root)
    rows = []
    for image_id in metadata["image_id"]:
        image, mask = load(root, image_id)
        image, mask = image / 255.0, mask > 0
        inside, outside = (image[mask] if mask.any() else image.reshape(-1, 3)), image[~mask]
        rows.append(np.concatenate([
            inside.mean(0), inside.std(0), *np.percentile(inside, [10, 50, 90], axis=0),
            outside.mean(0), outside.std(0), inside.mean(0) - outside.mean(0),
        ]))
    return np.array(rows), metadata["dx"].to_numpy(), truth["true_lesion_id"].to_numpy()


def test_easy_variant_is_clearly_learnable_from_colour_statistics(tmp_path):
    """Measured (seed 0, 600 lesions, 128 px, three lesion-grouped 70/30 splits): default balanced
    accuracy 0.45, malignant AUC 0.67-0.76; easy 0.83-0.93 and 0.86-0.89. This smaller easy set
    scores 0.82-0.93 and 0.90-0.91."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = synthderm.generate(tmp_path / "easy", n_lesions=400, size=64, seed=5, difficulty="easy", workers=2)
    x, dx, groups = colour_statistics(root)
    assert set(dx) == set(CLASSES)
    malignant = np.isin(dx, MALIGNANT_CLASSES)
    for split_seed in range(3):
        train, test = next(GroupShuffleSplit(1, test_size=0.3, random_state=split_seed).split(x, dx, groups))
        assert not set(groups[train]) & set(groups[test])

        def model():
            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))

        predicted = model().fit(x[train], dx[train]).predict(x[test])
        assert balanced_accuracy_score(dx[test], predicted) >= 0.7  # default: ~0.45; chance 0.14
        scores = model().fit(x[train], malignant[train]).predict_proba(x[test])[:, 1]
        assert roc_auc_score(malignant[test], scores) >= 0.8  # default: ~0.72


def test_easy_plans_are_the_default_plans_without_mimics():
    probs = synthderm.artefact_probabilities(None)
    default = synthderm.plan_dataset(300, 2, probs)
    easy = synthderm.plan_dataset(300, 2, probs, "easy")
    assert any(p.looks_like != p.dx for p in default)
    assert all(p.looks_like == p.dx and p.difficulty == "easy" for p in easy)
    same = [replace(p, looks_like=p.dx, difficulty="easy", lesion_contrast=1.0) for p in default]
    assert [repr(p) for p in same] == [repr(p) for p in easy]
    assert synthderm.EASY_LOOKS["mel"]["radius"] == pytest.approx((0.48875, 0.58125))  # centre 0.535, width / 4
    assert synthderm.EASY_LOOKS["mel"]["veil"][0] == pytest.approx(0.1)  # 0.4 pulled 3/4 toward 0
    assert synthderm.EASY_LOOKS["vasc"]["lacunae"][0] == pytest.approx(0.9625)  # 0.85 pulled toward 1
    with pytest.raises(BenchboxError, match="difficulty"):
        synthderm.generate(Path("/nonexistent/x"), difficulty="hard")


def test_synthderm_easy_spec_generates_once_into_the_cache(tmp_path, monkeypatch):
    from benchbox.data import load

    monkeypatch.setenv("BENCHBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(load.EASY_SYNTHDERM, "n_lesions", 20)
    monkeypatch.setitem(load.EASY_SYNTHDERM, "size", 48)
    dataset = load.load_dataset("synthderm-easy", progress=False)
    root = load.easy_synthderm_dir()
    assert dataset.name == "synthderm-easy" and Path(dataset.root) == root
    assert root.name == f"easy-{load._generator_hash()}-seed0-n20-48px" and root != load.default_synthderm_dir()
    assert set(dataset.manifest["dx"]) == set(CLASSES)
    stamp = (root / "HAM10000_metadata.csv").stat().st_mtime_ns
    assert load.load_dataset("synthderm-easy", progress=False).hash == dataset.hash
    assert (root / "HAM10000_metadata.csv").stat().st_mtime_ns == stamp
    assert load.parse_spec("synthderm-easy") == ("synthderm-easy", None)


# ---------------------------------------------------------------------------------------------
# Planted-truth options for `benchbox validate`: lesion contrast, ink masks, counterfactual pairs

INK_HALF = {"ink": {dx: 0.5 for dx in CLASSES}}  # the marker on half of every class's images


def test_contrast_factor_is_the_documented_ramp():
    assert synthderm.contrast_floor(None) == 0.5 and synthderm.contrast_floor(None, "easy") == 1.0
    assert synthderm.contrast_floor("graded", "easy") == 0.5 and synthderm.contrast_floor("equal") == 1.0
    assert synthderm.contrast_floor(0.2) == 0.2
    # floor at ITA <= -40, 1 at ITA >= 50, linear between: at 5 degrees half way.
    for ita, floor, expected in ((-50, 0.5, 0.5), (-40, 0.5, 0.5), (5, 0.5, 0.75), (50, 0.5, 1.0), (70, 0.5, 1.0),
                                 (-45, 0.2, 0.2), (5, 0.2, 0.6), (-30, 1.0, 1.0)):
        assert synthderm.contrast_factor(ita, floor) == pytest.approx(expected)
    for bad in ("strong", 0, 1.5, -0.1, True, [0.5]):
        with pytest.raises(BenchboxError, match=r"lesion_contrast=.*graded.*equal.*\(0, 1\]"):
            synthderm.contrast_floor(bad)
    with pytest.raises(BenchboxError, match="lesion_contrast"):
        synthderm.generate(Path("/nonexistent/x"), lesion_contrast="none")
    with pytest.raises(BenchboxError, match="artefact_masks"):
        synthderm.generate(Path("/nonexistent/x"), artefact_masks="yes")


@pytest.fixture(scope="module")
def contrast_pair(tmp_path_factory) -> dict[str, Path]:
    """The same 40 lesions with graded and with equal lesion contrast."""
    folder = tmp_path_factory.mktemp("contrast")
    return {c: synthderm.generate(folder / c, n_lesions=40, size=64, seed=8, lesion_contrast=c, workers=1)
            for c in ("graded", "equal")}


def test_graded_contrast_scales_lesion_density_by_the_planted_factor(contrast_pair):
    """Per image, the lesion's optical density -log(lesion / skin) (linear luminance, mean over the
    eroded mask) under graded over that under equal contrast is contrast_factor(ita, 0.5): pigment
    absorbance is scaled by it, so the ratio is exact but for white structures, noise and JPEG.
    Where the factor is 1 (ITA >= 50) the two images are byte-identical."""
    metadata, truth = read(contrast_pair["equal"])
    assert read(contrast_pair["graded"])[1].equals(truth)
    rows = []
    for image_id in metadata["image_id"]:
        factor = synthderm.contrast_factor(truth.loc[image_id, "ita"], 0.5)
        files = {c: root / "HAM10000_images_part_1" / f"{image_id}.jpg" for c, root in contrast_pair.items()}
        if factor == 1.0:
            assert files["graded"].read_bytes() == files["equal"].read_bytes()
            continue
        _, mask = load(contrast_pair["equal"], image_id)
        core, skin = ndimage.binary_erosion(mask > 0, iterations=2), skin_pixels(mask)
        density, difference = {}, {}
        for c, root in contrast_pair.items():
            image = load(root, image_id)[0]
            luminance = _LINEAR[image] @ RGB_TO_XYZ[1]
            density[c] = -np.log(luminance[core] / np.median(luminance[skin])).mean()
            difference[c] = np.abs(image[core].mean(0) - np.median(image[skin], 0)).sum()
        rows.append((factor, density["graded"] / density["equal"], difference["graded"] / difference["equal"]))
    factor, density_ratio, colour_ratio = np.array(rows).T
    dark = factor < 0.8  # ITA below about 10 degrees
    assert dark.sum() >= 8 and (factor < 1).sum() >= 20
    assert np.median(density_ratio / factor) == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(density_ratio - factor) < 0.05) > 0.7  # the rest: white scars, regression
    assert (colour_ratio[dark] < 0.85).all()  # the mean colour is visibly closer to the skin's


def test_contrast_step_is_the_floor_at_or_below_its_ita_and_full_above():
    assert [synthderm.contrast_factor(ita, 0.05, 28.0) for ita in (-50, 27.9, 28.0, 28.1, 70)] == [0.05, 0.05, 0.05, 1.0, 1.0]
    assert synthderm.contrast_factor(-50, 0.05) == 0.05 and synthderm.contrast_factor(5.0, 0.05) == pytest.approx(0.05 + 0.95 * 0.5)
    assert synthderm.contrast_factor(-50, 1.0, 28.0) == 1.0
    with pytest.raises(BenchboxError, match="contrast_step_ita"):
        synthderm.generate(Path("/nonexistent/x"), contrast_step_ita="dark")


def test_contrast_step_fades_only_the_lesions_on_skin_at_or_below_the_step(contrast_pair, tmp_path):
    """A step at ITA 28 with floor 0.05: images above it are byte-identical to equal contrast; at or
    below, the lesion's optical density is about 0.05 of equal contrast's."""
    step = synthderm.generate(tmp_path / "step", n_lesions=40, size=64, seed=8, lesion_contrast=0.05,
                              contrast_step_ita=28.0, workers=1)
    metadata, truth = read(contrast_pair["equal"])
    ratios = []
    for image_id in metadata["image_id"]:
        files = {c: root / "HAM10000_images_part_1" / f"{image_id}.jpg" for c, root in (("step", step), ("equal", contrast_pair["equal"]))}
        if truth.loc[image_id, "ita"] > 28.0:
            assert files["step"].read_bytes() == files["equal"].read_bytes()
            continue
        _, mask = load(contrast_pair["equal"], image_id)
        core, skin = ndimage.binary_erosion(mask > 0, iterations=2), skin_pixels(mask)
        density = {}
        for c, root in (("step", step), ("equal", contrast_pair["equal"])):
            luminance = _LINEAR[load(root, image_id)[0]] @ RGB_TO_XYZ[1]
            density[c] = -np.log(luminance[core] / np.median(luminance[skin])).mean()
        ratios.append(density["step"] / density["equal"])
    assert len(ratios) >= 8
    assert np.median(ratios) < 0.15  # pigment at 0.05x; white structures, noise and JPEG add a little


@pytest.fixture(scope="module")
def ink_pair(tmp_path_factory) -> dict[str, Path]:
    """A counterfactual pair: the same 40 lesions with the ink marker at its base rate and on half of
    every class's images (with ink masks)."""
    folder = tmp_path_factory.mktemp("ink")
    return {
        "plain": synthderm.generate(folder / "plain", n_lesions=40, size=64, seed=7, workers=1),
        "inked": synthderm.generate(folder / "inked", n_lesions=40, size=64, seed=7, artefact_correlation=INK_HALF,
                                    artefact_masks=True, workers=1),
    }


def test_ink_masks_exist_exactly_for_images_with_ink_and_cover_the_marker(ink_pair):
    """A mask exists for each image whose truth says ink. Against the same image without the marker
    (its counterfactual, same noise): the masked pixels turn violet (blue up, green down; hue alone
    is unreliable on a 1-2 px line after JPEG's chroma subsampling) and darker on light skin, and
    the image barely changes away from the mask; no violet pixel lies off mask and lesion."""
    root = ink_pair["inked"]
    metadata, truth = read(root)
    plain_truth = read(ink_pair["plain"])[1]
    inked = truth.index[truth["ink"]]
    assert 0.35 < len(inked) / len(truth) < 0.65
    assert sorted(p.name for p in (root / "synthderm_ink_masks").iterdir()) == sorted(inked + "_ink.png")
    assert not (ink_pair["plain"] / "synthderm_ink_masks").exists()
    field = skin_pixels(np.zeros((64, 64), dtype=bool))
    added = 0
    for image_id, site in zip(metadata["image_id"], metadata["dataset"]):
        if image_id not in inked:
            continue
        ink = np.asarray(Image.open(synthderm.ink_mask_path(root, image_id)))
        assert ink.dtype == np.uint8 and set(np.unique(ink)) == {0, 255}
        ink = ink > 0
        image, mask = load(root, image_id)
        lab = neutral_lab(image, site)
        violet = (lab[..., 1] - lab[..., 2] > 20) & field & ~ndimage.binary_dilation(mask > 0, iterations=2)
        assert not (violet & ~ndimage.binary_dilation(ink, iterations=3)).any()  # 3 px: blur, chroma
        if plain_truth.loc[image_id, "ink"]:
            continue  # the same image in both
        added += 1
        change = _LINEAR[image] - _LINEAR[load(ink_pair["plain"], image_id)[0]]
        assert np.percentile(change[ink, 2] - change[ink, 1], 10) > 0.03
        far = ~ndimage.binary_dilation(ink, iterations=3)
        assert np.abs(change[ink]).mean() > 20 * np.abs(change[far]).mean()
        if truth.loc[image_id, "ita"] > 28:
            assert np.median(change[ink] @ RGB_TO_XYZ[1]) < -0.03
    assert added >= 10


def test_artefact_correlation_changes_only_the_artefacts(ink_pair):
    """Counterfactual pairs: the same ids, classes, metadata, skin tones, poses and lesion masks;
    images whose artefact flags agree are byte-identical, and where they do not, render()'s pixels
    are identical wherever neither version's ink (dilated by the site's blur) reaches."""
    plain, inked = ink_pair["plain"], ink_pair["inked"]
    assert (plain / "HAM10000_metadata.csv").read_bytes() == (inked / "HAM10000_metadata.csv").read_bytes()
    truth_plain, truth_inked = read(plain)[1], read(inked)[1]
    pd.testing.assert_frame_equal(truth_plain.drop(columns="ink"), truth_inked.drop(columns="ink"))
    changed = truth_plain.index[truth_plain["ink"] != truth_inked["ink"]]
    assert len(changed) >= 10
    masks, images = "HAM10000_segmentations_lesion_tschandl", "HAM10000_images_part_1"
    for image_id in truth_plain.index:
        assert (plain / masks / f"{image_id}_segmentation.png").read_bytes() == (
            inked / masks / f"{image_id}_segmentation.png").read_bytes()
        same = (plain / images / f"{image_id}.jpg").read_bytes() == (inked / images / f"{image_id}.jpg").read_bytes()
        assert same == (image_id not in changed)

    # Plans: only the flags differ, whatever the correlation (float or dict).
    def without_flags(plans):
        return [repr(replace(p, views=tuple(replace(v, hair=False, ruler=False, ink=False) for v in p.views)))
                for p in plans]

    correlations = {"none": None, "float": 1.0, "half": INK_HALF, "all": {"ink": {dx: 1.0 for dx in CLASSES}}}
    plans = {name: synthderm.plan_dataset(40, 7, synthderm.artefact_probabilities(c)) for name, c in correlations.items()}
    assert len({tuple(without_flags(p)) for p in plans.values()}) == 1

    # Rendered pixels (before JPEG): identical away from the ink where one version has it, for
    # ink added and removed; identical everywhere where both have it, even beyond the base rate.
    radius = 3  # > the largest site blur at 64 px (0.45 px sd, truncated at 4 sd)
    differing = both_beyond_base = 0
    for plan, half, every in zip(plans["none"], plans["half"], plans["all"]):
        look = synthderm.lesion_appearance(7, plan)
        for view, other, inked in zip(plan.views, half.views, every.views):
            image, mask, ink = synthderm.render(7, plan, look, view, 64, ink_cover=True)
            image2, mask2, ink2 = synthderm.render(7, half, look, other, 64, ink_cover=True)
            np.testing.assert_array_equal(mask, mask2)
            if view.ink == other.ink:
                np.testing.assert_array_equal(image, image2)
                continue
            near = ndimage.binary_dilation((ink > 0) | (ink2 > 0), iterations=radius)
            np.testing.assert_array_equal(image[~near], image2[~near])
            assert (image[near] != image2[near]).any()
            differing += 1
            if other.ink:  # ink beyond the base rate: the same marker with every class inked
                np.testing.assert_array_equal(image2, synthderm.render(7, every, look, inked, 64)[0])
                both_beyond_base += 1
    assert differing >= 10 and both_beyond_base >= 5


def test_ink_width_widens_only_the_marker(tmp_path, ink_pair):
    """ink_width=3 (validate's bold marker pen) draws the same arcs about three times as wide: the
    images without ink are byte-identical to ink_width=1's, every inked image's mask holds at least
    95 % of width 1's (the arcs' ends round differently) and covers 2-4 times its pixels. A width
    out of (0, 8] is refused."""
    wide = synthderm.generate(tmp_path / "wide", n_lesions=40, size=64, seed=7, artefact_correlation=INK_HALF,
                              artefact_masks=True, workers=1, ink_width=3)
    truth = read(wide)[1]
    images = "HAM10000_images_part_1"
    ratios = []
    for image_id, inked in truth["ink"].items():
        same = (wide / images / f"{image_id}.jpg").read_bytes() == (ink_pair["inked"] / images / f"{image_id}.jpg").read_bytes()
        assert same == (not inked)
        if inked:
            thin, bold = (np.asarray(Image.open(synthderm.ink_mask_path(root, image_id))) > 0 for root in (ink_pair["inked"], wide))
            assert (thin & bold).sum() >= 0.95 * thin.sum()  # the same arc (its ends may round differently)
            ratios.append(bold.sum() / thin.sum())
    assert len(ratios) >= 10 and 2 < np.median(ratios) < 4
    for bad in (0, -1, 9, True, "3"):
        with pytest.raises(BenchboxError, match="ink_width"):
            synthderm.generate(tmp_path / f"bad-{bad}", n_lesions=8, ink_width=bad)


def test_defaults_are_unchanged_by_the_new_options(tmp_path, contrast_pair, ink_pair):
    """lesion_contrast=None is graded (default) or equal (easy), and artefact_masks=True only adds
    the mask folder. (Checked against the generator before these options existed: n_lesions=40 at
    64 px, default and easy, and the 1,500-lesion default dataset were byte-identical.)"""
    default = synthderm.generate(tmp_path / "default", n_lesions=40, size=64, seed=8, workers=1)
    assert tree_digest(default) == tree_digest(contrast_pair["graded"])
    easy = {c: synthderm.generate(tmp_path / f"easy-{c}", n_lesions=12, size=40, seed=8, difficulty="easy",
                                  lesion_contrast=c, workers=1) for c in (None, "equal", "graded")}
    assert tree_digest(easy[None]) == tree_digest(easy["equal"]) != tree_digest(easy["graded"])
    unmasked = synthderm.generate(tmp_path / "unmasked", n_lesions=40, size=64, seed=7,
                                  artefact_correlation=INK_HALF, workers=1)
    with_masks = {name: digest for name, digest in tree_digest(ink_pair["inked"]).items()
                  if not name.startswith("synthderm_ink_masks/")}
    assert tree_digest(unmasked) == with_masks


def test_synth_command_passes_the_planted_truth_options(monkeypatch, tmp_path):
    from benchbox.cli import main

    calls = []
    monkeypatch.setattr(synthderm, "generate", lambda out, **options: calls.append(options))
    common = ["data", "synth", "--out", str(tmp_path / "x"), "--n-lesions", "30"]
    assert main(common) == 0
    assert calls[-1] == {"seed": 0, "n_lesions": 30}
    planted = ["--lesion-contrast", "equal", "--artefact-masks", "--artefact-correlation", '{"ink": {"mel": 0.8}}']
    assert main([*common, *planted]) == 0
    assert calls[-1] == {"seed": 0, "n_lesions": 30, "lesion_contrast": "equal", "artefact_masks": True,
                         "artefact_correlation": {"ink": {"mel": 0.8}}}
    assert main([*common, "--lesion-contrast", "0.2", "--artefact-correlation", "0.5"]) == 0
    assert calls[-1] == {"seed": 0, "n_lesions": 30, "lesion_contrast": 0.2, "artefact_correlation": 0.5}
    assert main([*common, "--lesion-contrast", "0.05", "--contrast-step", "28"]) == 0
    assert calls[-1] == {"seed": 0, "n_lesions": 30, "lesion_contrast": 0.05, "contrast_step_ita": 28.0}
    assert main([*common, "--ink-width", "3"]) == 0
    assert calls[-1] == {"seed": 0, "n_lesions": 30, "ink_width": 3.0}
    for option, bad in (("--lesion-contrast", "strong"), ("--artefact-correlation", "{ink"),
                        ("--artefact-correlation", '{"ink": 0.5}')):
        with pytest.raises(SystemExit):
            main([*common, option, bad])
    assert len(calls) == 5
