"""CelebAExampleGen on a generated CelebA folder: face centering, splits, rejects, the centre crop, TFDS, bad input."""
import glob
import io
import json
import os
import re
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.celeba_example_gen import CelebADataError, CelebAExampleGen, ExampleRejects, input_fingerprint
from components.celeba_example_gen import centering_stage
from components.celeba_example_gen import executor as executor_lib
from components.celeba_example_gen import face_centering, sources
from components.celeba_example_gen import fixture as fixture_lib
from trainer_modules import contract

NUM_IMAGES = 40
LENIENT = 0.25  # the fixture rejects 8 of 48 images


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    return fixture_lib.write_celeba_fixture(str(tmp_path_factory.mktemp("celeba") / "data"), num_images=NUM_IMAGES)


def run_executor(output_dir, data_dir, **properties):
    """Runs the executor in-process (DirectRunner, one worker); returns (examples, rejects) artifacts."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(str(output_dir), "examples")
    rejects = ExampleRejects()
    rejects.uri = os.path.join(str(output_dir), "rejects")
    os.makedirs(examples.uri, exist_ok=True)
    os.makedirs(rejects.uri, exist_ok=True)
    executor_lib.Executor().Do(
        {}, {executor_lib.EXAMPLES_KEY: [examples], executor_lib.REJECTS_KEY: [rejects]},
        {executor_lib.DATA_DIR_KEY: data_dir, **properties},
    )
    return examples, rejects


@pytest.fixture(scope="module")
def face_run(celeba, tmp_path_factory):
    """The default face crop, in shards of 6 images (so train spans six shards and shards end mid-way)."""
    with mock.patch.object(executor_lib, "IMAGES_PER_SHARD", 6):
        return run_executor(tmp_path_factory.mktemp("face"), celeba.root, max_reject_fraction=LENIENT,
                            input_fingerprint="fp-1")


def read_split(examples, split):
    """{image_id: {"image": uint8 [64, 64, 3], "landmarks": float [5, 2], "attributes": list or None}}."""
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord-*.gz"))
    assert files, f"no TFRecord files for split {split}"
    decoded = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        png = feature[contract.IMAGE_KEY].bytes_list.value[0]
        assert png.startswith(b"\x89PNG"), "images must be PNG"
        image = np.asarray(Image.open(io.BytesIO(png)))
        assert image.shape == contract.CELEBA_SHAPE and image.dtype == np.uint8
        attributes = feature[contract.ATTRIBUTES_KEY].int64_list.value if contract.ATTRIBUTES_KEY in feature else None
        decoded[feature[contract.IMAGE_ID_KEY].bytes_list.value[0].decode()] = {
            "image": image,
            "landmarks": np.array(feature[contract.LANDMARKS_KEY].float_list.value).reshape(5, 2),
            "attributes": None if attributes is None else list(attributes),
        }
    return decoded


def read_rejects(rejects):
    with open(os.path.join(rejects.uri, executor_lib.REJECTS_FILE)) as f:
        return [json.loads(line) for line in f]


def files_under(folder):
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)


def find_colour(image, colour, around, window=6, tolerance=150):
    """Centroid (x, y) of a drawn feature near a point: pixels weighted by how close they are to its colour.

    Weighting (rather than thresholding) keeps small features, blurred by the resize, centred.
    """
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    near = (np.abs(xs - around[0]) <= window) & (np.abs(ys - around[1]) <= window)
    distance = np.abs(image.astype(int) - np.array(colour)).sum(axis=-1)
    weight = np.where(near, np.clip(tolerance - distance, 0, None), 0).astype(float)
    assert weight.sum() >= tolerance, f"no {colour} feature found near {around}"
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


# Eyes and mouth corners, with the colour the fixture drew them in.
DRAWN_FEATURES = [
    (face_centering.LEFT_EYE, fixture_lib.EYE_COLOUR),
    (face_centering.RIGHT_EYE, fixture_lib.EYE_COLOUR),
    (face_centering.LEFT_MOUTH, fixture_lib.MOUTH_CORNER_COLOUR),
    (face_centering.RIGHT_MOUTH, fixture_lib.MOUTH_CORNER_COLOUR),
]


def test_face_centering_puts_eyes_and_mouth_on_the_template(celeba, face_run):
    examples, _ = face_run
    checked = 0
    for split in sources.SPLITS:
        for image_id, example in read_split(examples, split).items():
            # The mapped landmarks sit on the template (the landmark file holds whole pixels, hence < 1 px) ...
            np.testing.assert_allclose(example["landmarks"], face_centering.TEMPLATE, atol=1.0, err_msg=image_id)
            # ... and so do the features in the pixels.
            for index, colour in DRAWN_FEATURES:
                found = find_colour(example["image"], colour, face_centering.TEMPLATE[index])
                assert np.abs(found - face_centering.TEMPLATE[index]).max() <= 2.0, (image_id, index, found)
            checked += 1
    assert checked == len(celeba.good)


def test_splits_ids_and_attributes_follow_the_text_files(celeba, face_run):
    examples, _ = face_run
    assert artifact_utils.decode_split_names(examples.split_names) == list(sources.SPLITS)
    for split in sources.SPLITS:
        written = read_split(examples, split)
        assert sorted(written) == [i for i in celeba.good if celeba.splits[i] == split]
        for image_id, example in written.items():
            assert example["attributes"] == celeba.attributes[image_id].tolist()
    counts = json.loads(examples.get_string_custom_property(executor_lib.EXAMPLE_COUNTS_PROPERTY))
    assert counts == celeba.example_counts() == {"train": 32, "eval": 4, "test": 4}
    padded = json.loads(examples.get_string_custom_property(executor_lib.PADDED_COUNTS_PROPERTY))
    assert padded == {split: sum(celeba.splits[i] == split for i in celeba.edge) for split in sources.SPLITS}
    assert sum(padded.values()) == 2
    assert examples_utils.get_payload_format(examples) == example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    assert examples_utils.get_file_format(examples) == "tfrecords_gzip"
    assert examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME) == "fp-1"
    assert examples.get_string_custom_property(executor_lib.CROP_PROPERTY) == "face"
    assert examples.get_string_custom_property(executor_lib.SOURCE_PROPERTY) == "files"


def test_rejects_are_counted_and_listed_with_reasons(celeba, face_run):
    examples, rejects = face_run
    listed = read_rejects(rejects)
    assert {r["image_id"]: r["reason"] for r in listed} == celeba.rejects
    assert {r["image_id"]: r["split"] for r in listed} == {i: celeba.splits[i] for i in celeba.rejects}
    assert [r["image_id"] for r in listed] == sorted(
        celeba.rejects, key=lambda i: (celeba.splits[i] or "", i)), "sorted by split, then id"
    details = {r["image_id"]: r["detail"] for r in listed}
    bad = celeba.bad_entries
    for name in ("corrupt", "truncated", "missing", "wrong_size"):
        assert celeba.image_path(bad[name]) in details[bad[name]], name
    assert "100x120" in details[bad["wrong_size"]]
    unparsable = details[bad["unparsable_landmarks"]]
    assert "line" in unparsable and sources.LANDMARKS_FILE in unparsable
    assert "outside" in details[bad["landmarks_outside"]]
    assert sources.PARTITION_FILE in details[bad["no_partition"]]

    summary = json.loads(examples.get_string_custom_property(executor_lib.REJECT_COUNTS_PROPERTY))
    assert summary == json.loads(rejects.get_string_custom_property(executor_lib.REJECT_COUNTS_PROPERTY))
    assert summary["total"] == 8 and summary["input_images"] == celeba.input_images == 48
    assert summary["by_reason"] == celeba.reject_counts()
    assert summary["by_split"] == {"train": 4, "eval": 2, "test": 1, "unassigned": 1}
    assert summary["fraction"] == pytest.approx(8 / 48)
    assert rejects.get_int_custom_property(executor_lib.NUM_REJECTS_PROPERTY) == 8
    assert rejects.get_int_custom_property(executor_lib.NUM_INPUT_IMAGES_PROPERTY) == 48
    assert rejects.get_float_custom_property(executor_lib.REJECT_FRACTION_PROPERTY) == pytest.approx(8 / 48)
    assert rejects.get_float_custom_property(executor_lib.MAX_REJECT_FRACTION_PROPERTY) == LENIENT


def test_reject_counters_must_match_the_rejects_listed():
    """The Beam counters per reason are checked against the rejects file: a reject counted but not
    written (or written twice) fails the ExampleGen instead of going unnoticed."""
    rejects = [sources.Reject("1.jpg", "train", face_centering.CORRUPT_IMAGE, ""),
               sources.Reject("2.jpg", "eval", face_centering.CORRUPT_IMAGE, ""),
               sources.Reject("3.jpg", "train", face_centering.TRUNCATED_IMAGE, "")]
    sizes = {"train": 5, "eval": 2, "test": 0}
    counters = {centering_stage.examples_counter("train"): 3, centering_stage.examples_counter("eval"): 1,
                centering_stage.rejects_counter(face_centering.CORRUPT_IMAGE): 2,
                centering_stage.rejects_counter(face_centering.TRUNCATED_IMAGE): 1,
                centering_stage.rejects_counter(face_centering.WRONG_SIZE): 0}
    assert executor_lib.check_accounting(sizes, [], rejects, counters) == {"train": 3, "eval": 1, "test": 0}
    counters[centering_stage.rejects_counter(face_centering.TRUNCATED_IMAGE)] = 2
    with pytest.raises(RuntimeError, match="rejects counted per reason .* are not the rejects listed"):
        executor_lib.check_accounting(sizes, [], rejects, counters)


def test_center_crop_reproduces_the_course_crop(celeba, tmp_path):
    examples, rejects = run_executor(tmp_path, celeba.root, crop="center", max_reject_fraction=LENIENT)
    assert examples.get_string_custom_property(executor_lib.CROP_PROPERTY) == "center"
    # No fingerprint given (as in a compiled pipeline): the executor takes the files' own.
    assert examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME) == \
        sources.input_fingerprint(celeba.root, crop="center")
    assert len(read_rejects(rejects)) == 8
    left, top = (178 - 128) / 2, (218 - 128) / 2
    for split in sources.SPLITS:
        for image_id, example in read_split(examples, split).items():
            expected = Image.open(celeba.image_path(image_id)).convert("RGB").resize(
                (64, 64), resample=Image.LANCZOS, box=(left, top, left + 128, top + 128))
            np.testing.assert_array_equal(example["image"], np.asarray(expected), err_msg=image_id)
            points = celeba.landmarks[image_id].reshape(5, 2)
            mapped = (points + 0.5 - [left, top]) * 0.5 - 0.5
            np.testing.assert_allclose(example["landmarks"], mapped, atol=1e-4)
            for index, colour in DRAWN_FEATURES:
                if not np.all((mapped[index] >= 3) & (mapped[index] <= 60)):
                    continue  # the course's crop cuts this feature off (faces near the border)
                found = find_colour(example["image"], colour, mapped[index], window=4)
                assert np.abs(found - mapped[index]).max() <= 2.0, (image_id, index)


def test_max_examples_per_split_keeps_the_first(celeba, tmp_path):
    examples, rejects = run_executor(tmp_path, celeba.root, max_examples_per_split=2, max_reject_fraction=LENIENT)
    for split in sources.SPLITS:
        assert sorted(read_split(examples, split)) == [i for i in celeba.good if celeba.splits[i] == split][:2]
    # Images without a partition entry belong to no split and are always reported.
    assert [r["image_id"] for r in read_rejects(rejects)] == [celeba.bad_entries["no_partition"]]


def test_without_attribute_file_examples_have_no_attributes(tmp_path):
    data = fixture_lib.write_celeba_fixture(str(tmp_path / "data"), num_images=10, corrupt=False, attributes=False)
    examples, rejects = run_executor(tmp_path / "out", data.root, max_examples_per_split=3)
    written = read_split(examples, contract.TRAIN_SPLIT)
    assert len(written) == 3 and all(example["attributes"] is None for example in written.values())
    assert read_rejects(rejects) == []
    assert rejects.get_int_custom_property(executor_lib.NUM_REJECTS_PROPERTY) == 0


@pytest.mark.parametrize("limit, known_only", [(0.05, True), (0.1, False)], ids=["from-text-files", "after-images"])
def test_reject_fraction_over_the_limit_fails_and_keeps_the_rejects(celeba, tmp_path, limit, known_only):
    # 4 of 48 rejects are known from the text files and the listing (8.3%), 8 of 48 after reading (16.7%).
    with pytest.raises(executor_lib.TooManyRejectsError) as raised:
        run_executor(tmp_path, celeba.root, max_reject_fraction=limit)
    message = str(raised.value)
    expected = 4 if known_only else 8
    kept = executor_lib.kept_rejects_path(str(tmp_path / "rejects"))
    assert f"rejected {expected} of 48 images ({expected / 48:.2%})" in message
    assert f"max_reject_fraction {limit:.2%}" in message and kept in message
    assert ("before reading any image" in message) == known_only
    with open(kept) as f:
        kept_rejects = [json.loads(line) for line in f]
    assert len(kept_rejects) == expected and all(celeba.rejects[r["image_id"]] == r["reason"] for r in kept_rejects)
    assert files_under(tmp_path / "examples") == [], "no partial examples"
    assert files_under(tmp_path / "rejects") == [str(tmp_path / "rejects" / executor_lib.REJECTS_FILE)]


def test_nothing_found_says_where_to_put_the_files(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(CelebADataError) as raised:
        run_executor(tmp_path / "out", missing)
    message = str(raised.value)
    for expected in (missing, f"{missing}/{sources.IMAGES_DIR}/000001.jpg", sources.LANDMARKS_FILE,
                     sources.PARTITION_FILE, sources.ATTRIBUTES_FILE, "TFDS", "'celeb_a'", "does not exist"):
        assert expected in message
    assert files_under(tmp_path / "out") == []


def test_missing_text_file_is_named_with_the_layout(celeba, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(celeba.root, data)
    os.remove(os.path.join(data, sources.PARTITION_FILE))
    with pytest.raises(CelebADataError) as raised:
        run_executor(tmp_path / "out", data, max_reject_fraction=LENIENT)
    message = str(raised.value)
    assert f"missing {os.path.join(data, sources.PARTITION_FILE)}" in message
    assert f"{data}/{sources.LANDMARKS_FILE}" in message and "TFDS" in message
    assert files_under(tmp_path / "out") == []


def _rewrite_line(path, number, text):
    with open(path) as f:
        lines = f.read().splitlines()
    lines[number - 1] = text
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _header_order(data):
    names = list(contract.CELEBA_ATTRIBUTES)
    names[0], names[1] = names[1], names[0]
    _rewrite_line(os.path.join(data, sources.ATTRIBUTES_FILE), 2, " ".join(names))
    return (sources.ATTRIBUTES_FILE,
            "same names in another order: column 1 is Arched_Eyebrows, expected 5_o_Clock_Shadow")


def _header_names(data):
    names = [name if name != "Young" else "Old" for name in contract.CELEBA_ATTRIBUTES]
    _rewrite_line(os.path.join(data, sources.ATTRIBUTES_FILE), 2, " ".join(names))
    return sources.ATTRIBUTES_FILE, "missing Young; unexpected Old"


def _header_short(data):
    _rewrite_line(os.path.join(data, sources.ATTRIBUTES_FILE), 2, " ".join(contract.CELEBA_ATTRIBUTES[:39]))
    return sources.ATTRIBUTES_FILE, "found 39 names, expected 40: missing Young"


def _landmark_header(data):
    _rewrite_line(os.path.join(data, sources.LANDMARKS_FILE), 2, "x1 y1 x2 y2 x3 y3 x4 y4 x5 y5")
    return sources.LANDMARKS_FILE, "line 2: expected the landmark header 'lefteye_x lefteye_y"


def _count_mismatch(data):
    _rewrite_line(os.path.join(data, sources.LANDMARKS_FILE), 1, "202599")
    return sources.LANDMARKS_FILE, "line 1 says 202599 rows but the file has 47"


def _count_not_a_number(data):
    _rewrite_line(os.path.join(data, sources.ATTRIBUTES_FILE), 1, "lots")
    return sources.ATTRIBUTES_FILE, "line 1: expected the number of rows, found 'lots'"


BAD_FILES = [_header_order, _header_names, _header_short, _landmark_header, _count_mismatch, _count_not_a_number]


@pytest.mark.parametrize("corrupt", BAD_FILES, ids=[f.__name__.strip("_") for f in BAD_FILES])
def test_bad_text_file_fails_naming_file_and_difference(celeba, tmp_path, corrupt):
    data = str(tmp_path / "data")
    shutil.copytree(celeba.root, data)
    name, problem = corrupt(data)
    with pytest.raises(CelebADataError, match=re.escape(problem)) as raised:
        run_executor(tmp_path / "out", data, max_reject_fraction=LENIENT)
    assert os.path.join(data, name) in str(raised.value)
    assert files_under(tmp_path / "out") == []


def test_malformed_and_duplicate_rows_are_rejects_not_failures(tmp_path):
    data = fixture_lib.write_celeba_fixture(str(tmp_path / "data"), num_images=20, corrupt=False)
    ids = data.good
    attributes_path = data.text_path(sources.ATTRIBUTES_FILE)
    with open(attributes_path) as f:
        lines = f.read().splitlines()
    lines[2] = lines[2].replace(" 1", " 7", 1).replace("-1", " 7", 1)  # ids[0]: a value that is not -1/1
    lines[3] = " ".join(lines[3].split()[:30])  # ids[1]: too few values
    with open(attributes_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(data.text_path(sources.PARTITION_FILE), "a") as f:
        f.write(f"{ids[2]} 1\n999998.jpg 5\n")  # ids[2] listed twice; a partition value out of range
    examples, rejects = run_executor(tmp_path / "out", data.root, max_reject_fraction=LENIENT)
    reasons = {r["image_id"]: (r["reason"], r["split"]) for r in read_rejects(rejects)}
    assert reasons == {
        ids[0]: (sources.BAD_ATTRIBUTES, "train"),
        ids[1]: (sources.BAD_ATTRIBUTES, "train"),
        ids[2]: (sources.DUPLICATE_ROW, None),
        "999998.jpg": (sources.BAD_PARTITION, None),
    }
    details = {r["image_id"]: r["detail"] for r in read_rejects(rejects)}
    assert "must be -1 or 1, found '7'" in details[ids[0]]
    assert "expected 40 attribute values, found 29" in details[ids[1]]
    assert re.search(r"lines \d+ and \d+ both name " + re.escape(ids[2]), details[ids[2]])
    assert "expected one partition value 0, 1 or 2, found '5'" in details["999998.jpg"]
    assert sum(json.loads(examples.get_string_custom_property(executor_lib.EXAMPLE_COUNTS_PROPERTY)).values()) == 17
    assert rejects.get_int_custom_property(executor_lib.NUM_INPUT_IMAGES_PROPERTY) == 21


@pytest.fixture(scope="module")
def tfds_celeba(tmp_path_factory):
    """A TFDS `celeb_a` prepared from a generated folder (TFDS's own builder; its download replaced by the files)."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    data = fixture_lib.write_celeba_fixture(str(root / "raw"), num_images=12, corrupt=False, identity=True)
    downloaded = {
        "img_align_celeba": data.image_path(""),
        "list_eval_partition": data.text_path(sources.PARTITION_FILE),
        "list_attr_celeba": data.text_path(sources.ATTRIBUTES_FILE),
        "landmarks_celeba": data.text_path(sources.LANDMARKS_FILE),
        "identity_celeba": data.text_path(fixture_lib.IDENTITY_FILE),
    }

    def iter_archive(self, path):
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), "rb") as f:
                yield f"img_align_celeba/{name}", io.BytesIO(f.read())

    tfds_dir = str(root / "tfds")
    with mock.patch.object(tfds.download.DownloadManager, "download", lambda self, urls: downloaded), \
            mock.patch.object(tfds.download.DownloadManager, "iter_archive", iter_archive):
        tfds.builder(sources.TFDS_NAME, data_dir=tfds_dir).download_and_prepare(
            download_config=tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return data, tfds_dir


def test_tfds_prepared_celeb_a_is_read_and_face_centred(tfds_celeba, tmp_path):
    data, tfds_dir = tfds_celeba
    assert isinstance(sources.resolve_source(tfds_dir), sources.TfdsSource)
    examples, rejects = run_executor(tmp_path, tfds_dir)
    assert examples.get_string_custom_property(executor_lib.SOURCE_PROPERTY) == "tfds"
    assert read_rejects(rejects) == []
    for split in sources.SPLITS:
        written = read_split(examples, split)
        assert len(written) == data.example_counts()[split]
        attributes = sorted(example["attributes"] for example in written.values())
        assert attributes == sorted(data.attributes[i].tolist() for i in data.good if data.splits[i] == split)
        for image_id, example in written.items():
            assert image_id.startswith(f"celeb_a-{sources.TFDS_SPLITS[split]}.tfrecord")
            np.testing.assert_allclose(example["landmarks"], face_centering.TEMPLATE, atol=1.0)
            for index, colour in DRAWN_FEATURES:
                found = find_colour(example["image"], colour, face_centering.TEMPLATE[index])
                assert np.abs(found - face_centering.TEMPLATE[index]).max() <= 2.0


def test_tfds_source_not_prepared_names_files_and_tfds(tmp_path):
    with pytest.raises(CelebADataError) as raised:
        sources.resolve_source(str(tmp_path), source=sources.TFDS_SOURCE)
    message = str(raised.value)
    for expected in ("TFDS celeb_a is not prepared", sources.LANDMARKS_FILE, "download=True"):
        assert expected in message


def test_input_fingerprint_follows_the_files(tmp_path):
    data = fixture_lib.write_celeba_fixture(str(tmp_path / "data"), num_images=5, corrupt=False)
    before = input_fingerprint(data.root)
    assert input_fingerprint(data.root) == before
    assert input_fingerprint(data.root, source=sources.FILES_SOURCE) != before  # the source is part of the key

    os.utime(data.text_path(sources.PARTITION_FILE), ns=(0, 0))
    touched = input_fingerprint(data.root)
    assert touched != before
    shutil.copy(data.image_path(data.good[0]), data.image_path("999999.jpg"))
    assert input_fingerprint(data.root) not in {before, touched}
    assert input_fingerprint(str(tmp_path / "nowhere")) == input_fingerprint(str(tmp_path / "nowhere"))


def test_input_fingerprint_follows_image_contents_and_the_crop(tmp_path):
    """Overwriting an image under its own name, or another crop, is other data (ExampleGen cache, classifier reuse)."""
    data = fixture_lib.write_celeba_fixture(str(tmp_path / "data"), num_images=5, corrupt=False)
    before = input_fingerprint(data.root)
    assert input_fingerprint(data.root, crop=face_centering.FACE_CROP) == before
    assert input_fingerprint(data.root, crop=face_centering.CENTER_CROP) != before
    stat = os.stat(data.image_path(data.good[0]))
    with open(data.image_path(data.good[0]), "ab") as f:
        f.write(b"\0")
    grown = input_fingerprint(data.root)
    assert grown != before
    os.utime(data.image_path(data.good[0]), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert input_fingerprint(data.root) not in {before, grown}
    with pytest.raises(ValueError, match="crop"):
        input_fingerprint(data.root, crop="square")


def test_serialized_examples_parse_as_tf_examples():
    features = {
        "b": centering_stage.bytes_feature([b"", b"\x00\xff" * 200]),
        "f": centering_stage.float_feature([0.5, -1.25, 1e30, 3.0]),
        "i": centering_stage.int64_feature([0, 1, -1, 2 ** 62, -(2 ** 63), 300]),
    }
    parsed = tf.train.Example.FromString(centering_stage.serialize_example(features)).features.feature
    assert list(parsed["b"].bytes_list.value) == [b"", b"\x00\xff" * 200]
    assert list(parsed["f"].float_list.value) == [0.5, -1.25, np.float32(1e30), 3.0]
    assert list(parsed["i"].int64_list.value) == [0, 1, -1, 2 ** 62, -(2 ** 63), 300]
    expected = tf.train.Example()
    expected.features.feature["i"].int64_list.value.extend([0, 1, -1, 2 ** 62, -(2 ** 63), 300])
    assert tf.train.Example.FromString(centering_stage.serialize_example({"i": features["i"]})) == expected


def _project_module(name):
    """The file of a project module (components.*, trainer_modules.*), or None for anything else."""
    import importlib.util

    if name.split(".")[0] not in {"components", "trainer_modules"}:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError):
        return None  # `from package.module import Name`: Name is not a module
    return spec.origin if spec else None


def test_worker_stage_imports_no_tensorflow():
    """The DoFn's modules must stay TensorFlow-free at import, or every Beam worker process pays for importing it."""
    import ast

    stage = "components.celeba_example_gen.centering_stage"
    pending = [stage, "components.celeba_example_gen", "components", "trainer_modules"]
    checked = set()
    while pending:
        name = pending.pop()
        checked.add(name)
        for node in ast.parse(open(_project_module(name)).read()).body:  # module level: functions may import lazily
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for module in imported:
                assert module.split(".")[0] not in {"tensorflow", "tfx", "tensorflow_datasets"}, (name, module)
                if module not in checked and _project_module(module):
                    pending.append(module)
    assert {"components.celeba_example_gen.sources", "components.celeba_example_gen.face_centering",
            "trainer_modules.contract"} <= checked


def test_plan_shards_cover_the_split():
    assert executor_lib.plan_shards("train", 12, 5) == [("train", 0, 5), ("train", 5, 10), ("train", 10, 12)]
    assert executor_lib.plan_shards("test", 0, 5) == []


def test_component_exec_properties_and_outputs():
    component = CelebAExampleGen("/data/celeba", max_examples_per_split=100, input_fingerprint="abc")
    assert component.exec_properties == {
        "data_dir": "/data/celeba",
        "crop": "face",
        "max_examples_per_split": 100,
        "max_reject_fraction": 0.05,
        "input_fingerprint": "abc",
        "source": "auto",
        "download": False,
    }
    assert component.outputs["examples"].type == standard_artifacts.Examples
    assert component.outputs["rejects"].type == ExampleRejects
    assert ExampleRejects.TYPE_NAME == "genpipe.ExampleRejects"
    assert CelebAExampleGen("/d", crop="center", max_reject_fraction=1).exec_properties["max_reject_fraction"] == 1.0


@pytest.mark.parametrize("arguments, problem", [
    ({"data_dir": ""}, "data_dir must name the folder"),
    ({"data_dir": "/d", "crop": "square"}, "unknown crop 'square'; known crops: face, center"),
    ({"data_dir": "/d", "source": "web"}, "unknown source 'web'; known sources: auto, files, tfds"),
    ({"data_dir": "/d", "max_examples_per_split": -1}, "max_examples_per_split must be an int >= 0"),
    ({"data_dir": "/d", "max_reject_fraction": 1.5}, "max_reject_fraction must be a number in [0, 1]"),
])
def test_component_rejects_bad_parameters(arguments, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        CelebAExampleGen(**arguments)
