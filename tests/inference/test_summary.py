"""The summary Secondary Capture: valid, in the source study, and drawing what the result says."""

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from inference.summary import DISCLAIMER, RED, YELLOW, banner, render, summary_image
from testkit import phantoms
from testkit.peers import dciodvfy_errors
from testkit.synthetic import stored_study
from triage.outcomes import BreastOutcome, FractureOutcome


def fracture_case(tmp_path):
    sources = phantoms.trauma_study(True, seed=1, images=2, size=256)
    outcome = FractureOutcome.model_validate(
        {
            "state": "FRACTURE",
            "probability": 0.91,
            "thresholds": {"fracture": 0.8, "doubt": 0.3},
            "images": [
                {
                    "sop_instance_uid": sources[0].SOPInstanceUID,
                    "boxes": [
                        {"corners": [40, 60, 120, 140], "score": 0.91},
                        {"corners": [150, 150, 200, 220], "score": 0.4},
                    ],
                }
            ],
        }
    )
    _, study = stored_study(sources, tmp_path / "src", "fracture")
    return sources, study, outcome


def colour_pixels(pixels, colour):
    return int(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).sum())


def test_solid_box_for_fracture_dashed_for_doubt(tmp_path):
    _, study, outcome = fracture_case(tmp_path)
    pixels = render(study, outcome, "", "m 1")
    assert colour_pixels(pixels, RED) > 4 * 2 * (80 + 80)  # a 4-px outline of an 80 x 80 box
    dashed = colour_pixels(pixels, YELLOW)
    assert 0 < dashed < 3 * 2 * (50 + 70) * 1.5 * 3  # present, but broken into dashes


def test_without_marks_nothing_is_drawn_on_the_images(tmp_path):
    _, study, outcome = fracture_case(tmp_path)
    outcome = outcome.model_copy(update={"state": "NO_FRACTURE", "probability": 0.1, "images": ()})
    assert colour_pixels(render(study, outcome, "", "m 1"), RED) == 0


@pytest.mark.parametrize(
    ("outcome", "reason", "expected"),
    [
        (FractureOutcome(state="DOUBT", probability=0.42), "", "DOUBT  (AI score 0.42)"),
        (
            BreastOutcome(score=10, route="DOUBLE_READ", high_risk=True, probability=0.99),
            "",
            "SCORE 10 OF 10 - DOUBLE READ  HIGH RISK",
        ),
        (BreastOutcome(), "incomplete screen", "NOT ANALYSED - DOUBLE READ: incomplete screen"),
        (
            FractureOutcome(state="NO_FRACTURE", probability=0.05, not_enabled={"rule_out": "no evidence"}),
            "",
            "NORMAL READING  (AI score 0.05)  (rule-out (eligible for discharge) not enabled)",
        ),
        (
            BreastOutcome(score=3, probability=0.1, not_enabled={"single_read": "x", "boxes": "y"}),
            "",
            "SCORE 3 OF 10 - DOUBLE READ  (localisation (boxes), single reading not enabled)",
        ),
        (
            FractureOutcome(),
            "pixel data cannot be decoded",
            "NOT ANALYSED - READ AS USUAL: pixel data cannot be decoded",
        ),
    ],
)
def test_banner_words(outcome, reason, expected):
    assert banner(outcome, reason) == expected


@pytest.mark.integration
def test_summary_image_is_a_valid_secondary_capture_in_the_source_study(tmp_path):
    sources, study, outcome = fracture_case(tmp_path)
    image = summary_image(study, render(study, outcome, "", "m 1"), generate_uid(), generate_uid())
    buffer = io.BytesIO()
    image.save_as(buffer, enforce_file_format=True)
    path = tmp_path / "sc.dcm"
    path.write_bytes(buffer.getvalue())
    assert dciodvfy_errors(path) == []
    stored = dcmread(path)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert stored.get(keyword) == sources[0].get(keyword)
    assert stored.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert stored.BurnedInAnnotation == "YES" and stored.ImageComments == DISCLAIMER
    assert "not verified" in stored.SeriesDescription
    assert stored.pixel_array.shape[-1] == 3


@pytest.mark.integration
@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 100", "Sørensen^Æsa"), ("ISO_IR 192", "Ågård^Søren")])
def test_screen_summary_is_valid_and_keeps_danish_names(tmp_path, charset, name):
    views = phantoms.screen("L", seed=7, size=128)
    for ds in views:
        ds.SpecificCharacterSet, ds.PatientName = charset, name
    _, study = stored_study(views, tmp_path / "src", "breast")
    outcome = BreastOutcome(score=4, route="SINGLE_READ", probability=0.3)
    image = summary_image(study, render(study, outcome, "", "m 1"), generate_uid(), generate_uid())
    path = tmp_path / "sc.dcm"
    image.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    stored = dcmread(path)
    assert str(stored.PatientName) == name and stored.SpecificCharacterSet == charset
    assert stored.ImageLaterality == "B"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("lateralities", "body_part"),
    [(("U", "U"), "HAND"), ((None, None), "HIP"), (("L", "R"), "SHOULDER"), (("R", None), "LEG")],
)
def test_summary_image_of_sources_without_one_side_passes_dciodvfy(tmp_path, lateralities, body_part):
    """Trauma radiographs often carry no single left or right (ImageLaterality U, or none): the
    summary image still has General Series Laterality (Type 2C, empty then), as dciodvfy requires."""
    sources = phantoms.trauma_study(True, seed=3, images=2, size=128)
    for ds, laterality in zip(sources, lateralities, strict=True):
        ds.BodyPartExamined = body_part
        if laterality is None:
            del ds.ImageLaterality
        else:
            ds.ImageLaterality = laterality
    _, study = stored_study(sources, tmp_path / "src", "fracture")
    outcome = FractureOutcome(state="DOUBT", probability=0.4)
    image = summary_image(study, render(study, outcome, "", "m 1"), generate_uid(), generate_uid())
    path = tmp_path / "sc.dcm"
    image.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    stored = dcmread(path)
    assert "Laterality" in stored or stored.get("ImageLaterality") == "B"
