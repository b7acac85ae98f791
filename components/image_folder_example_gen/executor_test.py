"""ImageFolderExampleGen on a generated folder: square crops of every mode, hash splits, rejects, bad input."""
import dataclasses
import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, Tuple
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.celeba_example_gen.component import ExampleRejects
from components.image_folder_example_gen import ImageFolderDataError, ImageFolderExampleGen, input_fingerprint
from components.image_folder_example_gen import executor as executor_lib
from components.image_folder_example_gen import sources, square_crop
from trainer_modules import contract

SIZE = 64
LENIENT = 0.25  # the folder rejects 3 of 14 images
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pixels(height, width, channels, seed):
    """Smooth gradients plus noise: enough structure that a wrong crop or orientation changes the pixels."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255.0 / width, ys * 255.0 / height, (xs + ys) * 127.0 / (width + height)], axis=-1)
    noisy = base[:, :, :channels] + rng.normal(0, 12, (height, width, channels))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _rgb(width, height, seed):
    return Image.fromarray(_pixels(height, width, 3, seed), "RGB")


def _encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgba(width, height, seed):
    """Left half fully transparent over pure red (which must not show), right half opaque."""
    pixels = np.concatenate([_pixels(height, width, 3, seed), np.full((height, width, 1), 255, np.uint8)], axis=-1)
    pixels[:, : width // 2] = (255, 0, 0, 0)
    return Image.fromarray(pixels, "RGBA")


def _grey16(width, height):
    ys, xs = np.mgrid[0:height, 0:width]
    image = Image.fromarray((xs * 65535 // (width - 1)).astype(np.uint16) | (ys % 2).astype(np.uint16))
    assert image.mode == "I;16"
    return image


def _exif_rotated(width, height, seed):
    """A JPEG stored width x height whose EXIF says: rotate 90 degrees clockwise to display (orientation 6)."""
    exif = Image.Exif()
    exif[square_crop.EXIF_ORIENTATION] = 6
    return _encode(_rgb(width, height, seed), "JPEG", quality=95, exif=exif)


# image id -> (encoded bytes, upright (height, width)); every one must become an example.
GOOD = {
    "photos/landscape.jpg": (lambda: _encode(_rgb(120, 90, 1), "JPEG", quality=95), (90, 120)),
    "photos/PORTRAIT.JPG": (lambda: _encode(_rgb(90, 150, 2), "JPEG", quality=95), (150, 90)),
    "square.jpeg": (lambda: _encode(_rgb(64, 64, 3), "JPEG", quality=95), (64, 64)),
    "grey.png": (lambda: _encode(Image.fromarray(_pixels(80, 100, 1, 4)[:, :, 0], "L"), "PNG"), (80, 100)),
    "alpha.png": (lambda: _encode(_rgba(80, 100, 5), "PNG"), (100, 80)),
    "palette.png": (lambda: _encode(_rgb(70, 70, 6).quantize(colors=16), "PNG"), (70, 70)),
    "grey16.png": (lambda: _encode(_grey16(60, 60), "PNG"), (60, 60)),
    "rotated.jpg": (lambda: _exif_rotated(120, 60, 7), (120, 60)),
    "nested/deeper/wide.PNG": (lambda: _encode(_rgb(200, 100, 8), "PNG"), (100, 200)),
    "nested/small_grey.jpg": (lambda: _encode(Image.fromarray(_pixels(30, 40, 1, 9)[:, :, 0], "L"), "JPEG"), (30, 40)),
    "nested/cmyk.jpg": (lambda: _encode(_rgb(96, 72, 10).convert("CMYK"), "JPEG"), (72, 96)),
}
UPSCALED = {"nested/small_grey.jpg", "grey16.png", "rotated.jpg"}  # short side below SIZE


def _truncated_png():
    data = _encode(_rgb(90, 90, 11), "PNG")
    return data[: len(data) // 2]


# image id -> (encoded bytes, reason, a text the detail must hold).
BAD = {
    "broken/corrupt.jpg": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, sources.CORRUPT_IMAGE,
                           "not a decodable"),
    "truncated.png": (_truncated_png, sources.TRUNCATED_IMAGE, "truncated"),
    "tiny.png": (lambda: _encode(_rgb(12, 30, 12), "PNG"), sources.TOO_SMALL, "12x30 (width x height)"),
}
IGNORED = {"notes.txt": b"not an image", "nested/labels.csv": b"a,b\n"}
HIDDEN = {".DS_Store": b"\x00\x00", "photos/._landscape.jpg": b"\x00\x05\x16\x07", ".cache/x.jpg": b"??"}


@dataclasses.dataclass
class Folder:
    root: str

    def path(self, image_id):
        return os.path.join(self.root, *image_id.split("/"))


def write_files(root, files: Dict[str, bytes]):
    for image_id, data in files.items():
        path = os.path.join(root, *image_id.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def write_folder(root, good=True, bad=True, other=True) -> Folder:
    files = {}
    if good:
        files.update({image_id: make() for image_id, (make, _) in GOOD.items()})
    if bad:
        files.update({image_id: make() for image_id, (make, _, _) in BAD.items()})
    if other:
        files.update(IGNORED)
        files.update(HIDDEN)
    write_files(root, files)
    return Folder(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(str(tmp_path_factory.mktemp("images") / "data"))


def run_executor(output_dir, data_dir, **properties):
    """Runs the executor in-process (DirectRunner); returns (examples, rejects) artifacts."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(str(output_dir), "examples")
    rejects = ExampleRejects()
    rejects.uri = os.path.join(str(output_dir), "rejects")
    os.makedirs(examples.uri, exist_ok=True)
    os.makedirs(rejects.uri, exist_ok=True)
    executor_lib.Executor().Do(
        {}, {executor_lib.EXAMPLES_KEY: [examples], executor_lib.REJECTS_KEY: [rejects]},
        {executor_lib.DATA_DIR_KEY: data_dir, executor_lib.IMAGE_SIZE_KEY: SIZE, **properties},
    )
    return examples, rejects


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    """The whole folder in shards of 4 images (so there are several shards and they mix splits)."""
    with mock.patch.object(executor_lib, "IMAGES_PER_SHARD", 4):
        return run_executor(tmp_path_factory.mktemp("run"), folder.root, max_reject_fraction=LENIENT,
                            input_fingerprint="fp-1", seed=3)


def read_split(examples, split) -> Dict[str, Tuple[np.ndarray, Tuple[int, int]]]:
    """{image_id: (uint8 [SIZE, SIZE, 3], (source_height, source_width))}."""
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord-*.gz"))
    assert files, f"no TFRecord files for split {split}"
    decoded = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        assert set(feature) == {contract.IMAGE_KEY, contract.IMAGE_ID_KEY, sources.SOURCE_HEIGHT_KEY,
                                sources.SOURCE_WIDTH_KEY}
        png = feature[contract.IMAGE_KEY].bytes_list.value[0]
        assert png.startswith(b"\x89PNG"), "images must be PNG"
        image = Image.open(io.BytesIO(png))
        assert image.mode == "RGB"
        image_id = feature[contract.IMAGE_ID_KEY].bytes_list.value[0].decode()
        assert image_id not in decoded, f"{image_id} written twice"
        source_size = (feature[sources.SOURCE_HEIGHT_KEY].int64_list.value[0],
                       feature[sources.SOURCE_WIDTH_KEY].int64_list.value[0])
        decoded[image_id] = (np.asarray(image), source_size)
    return decoded


def read_rejects(rejects):
    with open(os.path.join(rejects.uri, executor_lib.REJECTS_FILE)) as f:
        return [json.loads(line) for line in f]


def files_under(folder):
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)


def expected_square(path):
    """The reference crop, straight from PIL: upright, RGB over white, Lanczos on the centre square."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode == "I;16":
        image = Image.fromarray((np.asarray(image) / 257.0).round().astype(np.uint8), "L")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return np.asarray(image.resize((SIZE, SIZE), Image.LANCZOS, box=(left, top, left + side, top + side)))


def test_every_good_image_is_one_square_rgb_png(folder, folder_run):
    examples, _ = folder_run
    written = {}
    for split in sources.SPLITS:
        written.update(read_split(examples, split))
    assert sorted(written) == sorted(GOOD)
    for image_id, (image, source_size) in written.items():
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8, image_id
        assert source_size == GOOD[image_id][1], image_id
        np.testing.assert_array_equal(image, expected_square(folder.path(image_id)), err_msg=image_id)
    # Transparent pixels are white, not the red stored under them; the opaque half keeps its colours.
    alpha = written["alpha.png"][0]
    assert (alpha[:, :28] == 255).all() and alpha[:, 36:, 0].std() > 5
    # The EXIF-rotated photo is upright: not the crop of the pixels as stored.
    stored = Image.open(folder.path("rotated.jpg")).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS,
                                                                          box=(30, 0, 90, 60))
    assert np.abs(written["rotated.jpg"][0].astype(int) - np.asarray(stored)).mean() > 20
    upscaled = json.loads(examples.get_string_custom_property(executor_lib.UPSCALED_COUNTS_PROPERTY))
    assert sum(upscaled.values()) == len(UPSCALED)


def test_splits_follow_the_path_hash_and_cover_every_image_once(folder, folder_run):
    examples, _ = folder_run
    assert artifact_utils.decode_split_names(examples.split_names) == list(sources.SPLITS)
    plan = sources.plan(folder.root, SIZE, sources.DEFAULT_EVAL_FRACTION, seed=3)
    # Seed 3 hashes none of the 14 images into eval, so this run takes the tiny-folder rule: the good
    # train image with the lowest point moves to eval (test_max_examples_... runs without a move).
    assert plan.moved == {"palette.png": contract.EVAL_SPLIT}
    planned = dict(plan.candidates)
    counts = {}
    for split in sources.SPLITS:
        written = read_split(examples, split)
        counts[split] = len(written)
        for image_id in written:
            assert planned[image_id] == split
            if image_id not in plan.moved:
                assert split == sources.hash_split(image_id, sources.DEFAULT_EVAL_FRACTION, seed=3), image_id
    assert counts[contract.EVAL_SPLIT] >= 1 and counts[contract.TRAIN_SPLIT] >= 1
    assert json.loads(examples.get_string_custom_property(executor_lib.EXAMPLE_COUNTS_PROPERTY)) == counts
    assert sum(counts.values()) == len(GOOD)
    assert examples_utils.get_payload_format(examples) == example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    assert examples_utils.get_file_format(examples) == "tfrecords_gzip"
    assert examples.span == 0 and examples.get_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME) == 0
    assert examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME) == "fp-1"
    assert examples.get_int_custom_property(executor_lib.IMAGE_SIZE_PROPERTY) == SIZE


def test_rejects_are_counted_and_listed_with_reasons(folder, folder_run):
    examples, rejects = folder_run
    plan = sources.plan(folder.root, SIZE, sources.DEFAULT_EVAL_FRACTION, seed=3)
    listed = read_rejects(rejects)
    assert [r["image_id"] for r in listed] == sorted(BAD, key=lambda i: (dict(plan.candidates)[i], i))
    for record in listed:
        _, reason, detail = BAD[record["image_id"]]
        assert record["reason"] == reason
        assert record["split"] == dict(plan.candidates)[record["image_id"]]
        assert folder.path(record["image_id"]) in record["detail"] and detail in record["detail"]
        assert " at 0x" not in record["detail"], "details must not change from run to run"
    summary = json.loads(rejects.get_string_custom_property(executor_lib.REJECT_COUNTS_PROPERTY))
    assert summary == json.loads(examples.get_string_custom_property(executor_lib.REJECT_COUNTS_PROPERTY))
    inputs = len(GOOD) + len(BAD)
    assert summary["total"] == 3 and summary["input_images"] == inputs
    assert summary["by_reason"] == {reason: sum(bad[1] == reason for bad in BAD.values())
                                    for reason in sources.REJECT_REASONS}
    assert sum(summary["by_split"].values()) == 3 and summary["by_split"]["unassigned"] == 0
    assert rejects.get_int_custom_property(executor_lib.NUM_REJECTS_PROPERTY) == 3
    assert rejects.get_int_custom_property(executor_lib.NUM_INPUT_IMAGES_PROPERTY) == inputs
    assert rejects.get_float_custom_property(executor_lib.REJECT_FRACTION_PROPERTY) == pytest.approx(3 / inputs)
    assert rejects.get_float_custom_property(executor_lib.MAX_REJECT_FRACTION_PROPERTY) == LENIENT


def test_listing_ignores_other_and_hidden_files(folder, caplog):
    listing = sources.list_images(folder.root)
    assert listing.images == sorted([*GOOD, *BAD])
    assert listing.ignored == sorted(IGNORED)
    assert listing.hidden == [".DS_Store", ".cache/", "photos/._landscape.jpg"]
    with caplog.at_level("INFO"):
        sources.plan(folder.root, SIZE)
    assert "Ignoring 2 files" in caplog.text and "3 hidden entries" in caplog.text


def test_too_many_rejects_fails_and_keeps_the_rejects(folder, tmp_path):
    with pytest.raises(executor_lib.TooManyRejectsError) as raised:
        run_executor(tmp_path, folder.root, max_reject_fraction=0.1)
    message = str(raised.value)
    inputs = len(GOOD) + len(BAD)
    kept = executor_lib.kept_rejects_path(str(tmp_path / "rejects"))
    assert f"rejected 3 of {inputs} images ({3 / inputs:.2%})" in message
    assert "max_reject_fraction 10.00%" in message and kept in message
    assert "corrupt_image 1, truncated_image 1, too_small 1" in message
    with open(kept) as f:
        assert sorted(json.loads(line)["image_id"] for line in f) == sorted(BAD)
    assert files_under(tmp_path / "examples") == [], "no partial examples"
    assert files_under(tmp_path / "rejects") == [str(tmp_path / "rejects" / executor_lib.REJECTS_FILE)]


def test_max_examples_per_split_keeps_the_first_by_path(folder, tmp_path):
    examples, rejects = run_executor(tmp_path, folder.root, max_examples_per_split=2, max_reject_fraction=0.5)
    # No fingerprint given (as in a compiled pipeline): the executor takes the files' own.
    assert examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME) == \
        sources.input_fingerprint(folder.root)
    written = {split: sorted(read_split(examples, split)) for split in sources.SPLITS}
    hashed = {split: sorted(i for i in [*GOOD, *BAD] if sources.hash_split(i, 0.1) == split)[:2]
              for split in sources.SPLITS}
    rejected = {r["image_id"] for r in read_rejects(rejects)}
    considered = sorted(written["train"] + written["eval"] + sorted(rejected))
    assert considered == sorted(hashed["train"] + hashed["eval"])
    assert sources.plan(folder.root, SIZE, max_examples_per_split=2).moved == {}
    assert written["eval"]


@pytest.mark.parametrize("make", ["empty", "only_other_files"])
def test_no_images_names_the_folder_and_the_extensions(tmp_path, make):
    data = tmp_path / "data"
    data.mkdir()
    if make == "only_other_files":
        write_files(str(data), {"readme.txt": b"hi", "sub/photo.gif": b"GIF89a", ".hidden.jpg": b"x"})
    with pytest.raises(ImageFolderDataError) as raised:
        run_executor(tmp_path / "out", str(data))
    message = str(raised.value)
    assert f"no images in {data}" in message and "*.jpg, *.jpeg, *.png" in message and "any case" in message
    if make == "only_other_files":
        assert "2 other files" in message and "readme.txt" in message and "1 hidden" in message
    assert files_under(tmp_path / "out") == []


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ImageFolderDataError, match=re.escape(f"data_dir {tmp_path / 'nowhere'} does not exist")):
        run_executor(tmp_path / "out", str(tmp_path / "nowhere"))


def test_adding_files_moves_no_existing_image(folder, tmp_path):
    before = sources.plan(folder.root, SIZE, 0.3)
    data = str(tmp_path / "data")
    shutil.copytree(folder.root, data)
    write_files(data, {f"more/new_{i:02d}.png": _encode(_rgb(40, 40, 100 + i), "PNG") for i in range(20)})
    after = dict(sources.plan(data, SIZE, 0.3).candidates)
    assert len(after) == len(before.candidates) + 20
    for image_id, split in before.candidates:
        if image_id not in before.moved:
            assert after[image_id] == split, image_id
    assert dict(sources.plan(data, SIZE, 0.3, seed=1).candidates) != after, "the seed changes the split"


def _all_train(ids, eval_fraction=1e-9):
    return {image_id: sources.hash_split(image_id, eval_fraction) for image_id in ids}


def test_balance_moves_the_nearest_good_image_when_a_split_is_empty():
    ids = [f"img{i}.png" for i in range(6)]
    by_point = sorted(ids, key=sources.split_point)
    splits = _all_train(ids)
    assert set(splits.values()) == {contract.TRAIN_SPLIT}
    assert sources.balance_splits(splits, 0, lambda i: True) == {by_point[0]: contract.EVAL_SPLIT}
    # The nearest is corrupt: the next good one moves.
    assert sources.balance_splits(splits, 0, lambda i: i != by_point[0]) == {by_point[1]: contract.EVAL_SPLIT}
    # One good image cannot fill two splits.
    assert sources.balance_splits(splits, 0, lambda i: i == by_point[3]) == {}
    # Eval holding only bad images counts as empty.
    splits[by_point[0]] = contract.EVAL_SPLIT
    assert sources.balance_splits(splits, 0, lambda i: i != by_point[0]) == {by_point[1]: contract.EVAL_SPLIT}
    # All in eval: the highest good point moves to train.
    evals = {image_id: contract.EVAL_SPLIT for image_id in ids}
    assert sources.balance_splits(evals, 0, lambda i: True) == {by_point[-1]: contract.TRAIN_SPLIT}
    # Both splits have a good image: nothing moves, and only one image per split is decoded.
    decoded = []
    mixed = {image_id: contract.EVAL_SPLIT if image_id in by_point[:2] else contract.TRAIN_SPLIT for image_id in ids}
    assert sources.balance_splits(mixed, 0, lambda i: decoded.append(i) or True) == {}
    assert decoded == [by_point[0], by_point[-1]]


def test_two_images_give_one_train_and_one_eval(tmp_path):
    data = str(tmp_path / "data")
    write_files(data, {"a.png": _encode(_rgb(32, 32, 1), "PNG"), "b.png": _encode(_rgb(32, 32, 2), "PNG")})
    assert sorted(split for _, split in sources.plan(data, SIZE).candidates) == ["eval", "train"]


def test_large_jpeg_is_drafted_and_still_close_to_a_full_decode():
    encoded = _encode(_rgb(1200, 900, 13), "JPEG", quality=95)
    cropped = square_crop.square_crop(encoded, SIZE)
    assert (cropped.source_height, cropped.source_width, cropped.upscaled) == (900, 1200, False)
    full = Image.open(io.BytesIO(encoded)).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS,
                                                                box=(150, 0, 1050, 900))
    drafted = np.asarray(Image.open(io.BytesIO(cropped.png))).astype(float)
    mse = np.mean((drafted - np.asarray(full).astype(float)) ** 2)
    assert 10 * np.log10(255.0**2 / mse) > 35, "PSNR of the drafted crop against a full decode"


@pytest.mark.parametrize("encoded, reason", [
    (b"", sources.CORRUPT_IMAGE),
    (b"GIF89a not really", sources.CORRUPT_IMAGE),
    (_encode(_rgb(15, 200, 1), "PNG"), sources.TOO_SMALL),
], ids=["empty", "garbage", "too-small"])
def test_square_crop_rejects_with_a_reason(encoded, reason):
    with pytest.raises(square_crop.ImageRejected) as raised:
        square_crop.square_crop(encoded, SIZE)
    assert raised.value.reason == reason


def test_square_crop_accepts_the_minimum_side():
    assert square_crop.square_crop(_encode(_rgb(16, 200, 1), "PNG"), SIZE).upscaled


def test_remote_folders_are_read_through_gfile(folder):
    root = "ram://image_folder_test/data"
    for image_id in ["photos/landscape.jpg", "nested/deeper/wide.PNG", "tiny.png"]:
        tf.io.gfile.makedirs(os.path.dirname(f"{root}/{image_id}"))
        tf.io.gfile.copy(folder.path(image_id), f"{root}/{image_id}", overwrite=True)
    tf.io.gfile.copy(folder.path("notes.txt"), f"{root}/notes.txt", overwrite=True)
    listing = sources.list_images(root + "/")
    assert listing.images == ["nested/deeper/wide.PNG", "photos/landscape.jpg", "tiny.png"]
    assert listing.ignored == ["notes.txt"]
    plan = sources.plan(root, SIZE, 0.5)
    assert {split for _, split in plan.candidates} == set(sources.SPLITS)
    with open(folder.path("tiny.png"), "rb") as f:
        assert sources.read_bytes(sources.image_path(root, "tiny.png")) == f.read()
    with pytest.raises(FileNotFoundError):
        sources.read_bytes(f"{root}/gone.png")


def test_input_fingerprint_follows_the_images(tmp_path):
    data = str(tmp_path / "data")
    write_files(data, {"a.png": _encode(_rgb(32, 32, 1), "PNG"), "notes.txt": b"x"})
    before = input_fingerprint(data)
    assert input_fingerprint(data) == before
    write_files(data, {"more.txt": b"y"})
    assert input_fingerprint(data) == before, "non-image files do not count"
    os.utime(os.path.join(data, "a.png"), ns=(0, 0))
    touched = input_fingerprint(data)
    assert touched != before
    write_files(data, {"sub/b.JPG": _encode(_rgb(32, 32, 2), "JPEG")})
    assert input_fingerprint(data) not in {before, touched}
    assert input_fingerprint(str(tmp_path / "nowhere")) == input_fingerprint(str(tmp_path / "nowhere"))


def test_worker_stage_imports_no_tensorflow():
    """A Beam worker unpickling the DoFn imports the stage; it must not pay for importing TensorFlow or TFX.

    Imported in a fresh interpreter with a stand-in for apache_beam (itself TF-free, but 4 s to import).
    """
    code = (
        "import sys\nfrom unittest import mock\n"
        "sys.modules['apache_beam'] = mock.MagicMock(DoFn=object)\n"
        "import components.image_folder_example_gen.stage\n"
        "print(sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_datasets') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_plan_shards_cover_the_candidates():
    candidates = [(f"{i}.png", "train") for i in range(10)]
    shards = executor_lib.plan_shards(candidates, 4)
    assert [len(shard) for shard in shards] == [4, 4, 2]
    assert [c for shard in shards for c in shard] == candidates


def test_component_exec_properties_and_outputs():
    component = ImageFolderExampleGen("/data/coco", image_size=128, input_fingerprint="abc")
    assert component.exec_properties == {
        "data_dir": "/data/coco",
        "image_size": 128,
        "eval_fraction": 0.1,
        "max_examples_per_split": 0,
        "max_reject_fraction": 0.05,
        "input_fingerprint": "abc",
        "seed": 0,
    }
    assert component.outputs["examples"].type == standard_artifacts.Examples
    assert component.outputs["rejects"].type == ExampleRejects
    assert ImageFolderExampleGen("/d", max_reject_fraction=1).exec_properties["max_reject_fraction"] == 1.0


@pytest.mark.parametrize("arguments, problem", [
    ({"data_dir": ""}, "data_dir must name the folder holding the images"),
    ({"image_size": 7}, "image_size must be an int >= 8, got 7"),
    ({"image_size": 64.0}, "image_size must be an int >= 8, got 64.0"),
    ({"eval_fraction": 0}, "eval_fraction must be a number in (0, 1), got 0"),
    ({"eval_fraction": 1.0}, "eval_fraction must be a number in (0, 1), got 1.0"),
    ({"eval_fraction": -0.1}, "eval_fraction must be a number in (0, 1)"),
    ({"max_examples_per_split": -1}, "max_examples_per_split must be an int >= 0"),
    ({"max_reject_fraction": -0.01}, "max_reject_fraction must be a number in [0, 1]"),
    ({"seed": 1.5}, "seed must be an int"),
])
def test_component_rejects_bad_parameters(arguments, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        ImageFolderExampleGen(**{"data_dir": "/d", **arguments})
