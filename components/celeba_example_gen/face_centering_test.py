"""The face-centering geometry, padding, decoding checks and JPEG draft decoding, on images made here."""
import io

import numpy as np
import pytest
from PIL import Image

from components.celeba_example_gen import face_centering as fc
from components.celeba_example_gen import fixture as fixture_lib

CELEBA_MEAN_FACE = [69, 111.5, 108, 111.5, 88.5, 135, 72, 152, 105, 152]  # CelebA's aligned mean, roughly


def jpeg(image, quality=95):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def face_jpeg(scale, centre, seed=0):
    points = fixture_lib.face_points(scale, centre)
    image = fixture_lib.draw_face(points, scale, np.random.default_rng(seed))
    return jpeg(image), points


@pytest.mark.parametrize("scale, centre", [(1.0, (89, 109)), (1.95, (88.5, 131.75)), (2.7, (80.3, 120.9))])
def test_a_face_with_template_proportions_maps_onto_the_template(scale, centre):
    points = fixture_lib.face_points(scale, centre)
    box = fc.face_box(points)
    assert box[2] - box[0] == pytest.approx(fc.OUTPUT_SIZE * scale) == pytest.approx(box[3] - box[1])
    np.testing.assert_allclose(fc.map_points(points, box), fc.TEMPLATE, atol=1e-9)


def test_side_follows_eye_and_mouth_distances():
    points = np.array(CELEBA_MEAN_FACE, float).reshape(5, 2)
    left, top, right, bottom = fc.face_box(points)
    # eye distance 39 / 20 and eye-to-mouth 40.5 / 20, averaged: about the course's 128.
    assert right - left == pytest.approx(64 * (39 / 20 + 40.5 / 20) / 2)
    centre = ((points[0] + points[1]) / 2 + (points[3] + points[4]) / 2) / 2
    np.testing.assert_allclose([(left + right) / 2 - 0.5, (top + bottom) / 2 - 0.5], centre)


@pytest.mark.parametrize("elongation, eye_shift", [(1.0, 0.0), (1.2, 10 / 11), (1.4, 5 / 3), (0.8, 10 / 9)])
def test_one_scale_for_two_distances_moves_the_eyes_of_faces_with_other_proportions(elongation, eye_shift):
    """One scale cannot fit the eye distance and the eye-to-mouth distance of every face: the face
    centre always lands on the template's, the eyes move by half the mismatch. A face whose
    eye-to-mouth distance is 40% longer (relative to its eye distance) than the template's has its
    eye centre 5/3 px higher and each eye 5/3 px nearer the middle, of 64."""
    points = fixture_lib.face_points(1.9, (89, 120))
    eyes = (points[fc.LEFT_EYE] + points[fc.RIGHT_EYE]) / 2
    lower = [fc.NOSE, fc.LEFT_MOUTH, fc.RIGHT_MOUTH]
    points[lower, 1] = eyes[1] + (points[lower, 1] - eyes[1]) * elongation
    mapped = fc.map_points(points, fc.face_box(points))
    centre = (fc.eye_centre(mapped) + fc.mouth_centre(mapped)) / 2
    np.testing.assert_allclose(centre, fc.TEMPLATE_FACE_CENTRE, atol=1e-9)
    eye_offset = fc.eye_centre(mapped) - fc.eye_centre(fc.TEMPLATE)
    assert eye_offset[0] == pytest.approx(0.0, abs=1e-9)
    assert abs(eye_offset[1]) == pytest.approx(eye_shift)
    spread = (mapped[fc.RIGHT_EYE, 0] - mapped[fc.LEFT_EYE, 0]) - fc.TEMPLATE_EYE_DISTANCE
    assert abs(spread) / 2 == pytest.approx(eye_shift)


def test_center_box_is_the_course_crop():
    assert fc.center_box() == (25.0, 45.0, 153.0, 173.0)
    points = np.array(CELEBA_MEAN_FACE, float).reshape(5, 2)
    np.testing.assert_allclose(fc.map_points(points, fc.center_box()), (points + 0.5 - [25, 45]) / 2 - 0.5)


def test_crop_past_the_border_is_edge_padded_and_reported():
    image = Image.new("RGB", fc.SOURCE_SIZE, (200, 120, 40))
    inside, box, padded = fc.pad_to_cover(image, (10.0, 10.0, 138.0, 138.0))
    assert not padded and inside is image and box == (10.0, 10.0, 138.0, 138.0)
    bigger, box, padded = fc.pad_to_cover(image, (-20.5, -30.0, 107.5, 98.0))
    assert padded and bigger.size[0] > fc.SOURCE_WIDTH and box[0] > 0 and box[1] > 0
    resized = np.asarray(bigger.resize((64, 64), resample=Image.LANCZOS, box=box))
    assert (resized == (200, 120, 40)).all(), "edge replication keeps a uniform image uniform (zero padding would not)"


def test_center_face_reports_padding_and_keeps_geometry_at_the_border():
    encoded, points = face_jpeg(2.0, (52, 70))
    face = fc.center_face(encoded, points.reshape(-1))
    assert face.padded
    np.testing.assert_allclose(face.landmarks.reshape(5, 2), fc.TEMPLATE, atol=1e-4)
    encoded, points = face_jpeg(2.0, (89, 109))
    assert not fc.center_face(encoded, points.reshape(-1)).padded


def test_output_is_a_lossless_64x64_png():
    encoded, points = face_jpeg(1.9, (90, 112))
    face = fc.center_face(encoded, points.reshape(-1))
    decoded = Image.open(io.BytesIO(face.png))
    assert decoded.format == "PNG" and decoded.size == (64, 64) and decoded.mode == "RGB"
    assert fc.encode_png(decoded) == face.png or np.array_equal(
        np.asarray(Image.open(io.BytesIO(fc.encode_png(decoded)))), np.asarray(decoded))
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (10,)


@pytest.mark.parametrize("values, problem", [
    (CELEBA_MEAN_FACE[:8], "expected 10 values, got 8"),
    ([float("nan")] + CELEBA_MEAN_FACE[1:], "non-finite"),
    ([300] + CELEBA_MEAN_FACE[1:], "outside the 178x218 image: lefteye (300, 111.5)"),
    ([108, 111.5, 69, 111.5] + CELEBA_MEAN_FACE[4:], "is not at least 4 px right of left eye"),
    (CELEBA_MEAN_FACE[:6] + [72, 100, 105, 100], "is not at least 4 px below eye centre"),
])
def test_implausible_landmarks_are_rejected(values, problem):
    with pytest.raises(fc.ImageRejected, match=problem.replace("(", r"\(").replace(")", r"\)")) as raised:
        fc.check_landmarks(values)
    assert raised.value.reason == fc.BAD_LANDMARKS


def test_undecodable_images_are_rejected_with_their_reason():
    encoded, points = face_jpeg(1.9, (90, 112))
    cases = {
        b"": fc.CORRUPT_IMAGE,
        b"not an image at all": fc.CORRUPT_IMAGE,
        encoded[:4] + bytes(range(256)) * 4: fc.CORRUPT_IMAGE,
        encoded[: len(encoded) // 2]: fc.TRUNCATED_IMAGE,
        jpeg(Image.new("RGB", (218, 178))): fc.WRONG_SIZE,
    }
    for data, reason in cases.items():
        with pytest.raises(fc.ImageRejected) as raised:
            fc.center_face(data, points.reshape(-1))
        assert raised.value.reason == reason, data[:20]


def test_any_decodable_image_of_the_right_size_is_used_as_rgb():
    gray = Image.new("L", fc.SOURCE_SIZE, 90)
    face = fc.center_face(jpeg(gray), CELEBA_MEAN_FACE)
    assert np.asarray(Image.open(io.BytesIO(face.png))).shape == (64, 64, 3)


def test_draft_decoding_only_for_large_crops_and_close_to_full_decoding():
    assert [fc.draft_reduction((0, 0, side, side)) for side in (128, 255, 256, 600, 2000)] == [1, 1, 2, 4, 8]
    encoded, points = face_jpeg(4.0, (89, 100))  # eyes 80 px apart: a 256 px crop
    box = fc.face_box(points)
    image, reduction = fc.decode(encoded, box)
    assert reduction == 2 and image.size == (89, 109)
    full = fc.center_face(encoded, points.reshape(-1))
    drafted = fc.center_face(encoded, points.reshape(-1), draft=True)
    np.testing.assert_array_equal(full.landmarks, drafted.landmarks)
    difference = np.abs(np.asarray(Image.open(io.BytesIO(full.png)), float)
                        - np.asarray(Image.open(io.BytesIO(drafted.png)), float))
    assert difference.mean() < 2.0
    small, _ = face_jpeg(1.9, (90, 112))
    assert fc.decode(small, fc.face_box(fixture_lib.face_points(1.9, (90, 112))))[1] == 1


def test_unknown_crop_lists_the_crops():
    with pytest.raises(ValueError, match="unknown crop 'square'; known crops: face, center"):
        fc.center_face(b"", CELEBA_MEAN_FACE, crop="square")
