"""The Mammography CAD SR (TID 4000): no errors from dciodvfy or PixelMed's DicomSRValidator, read by
dsrdump, faithful to the screen it reports (views, lesions and their outlines, the score, the
evidence gate), for analysed and not-analysed screens alike."""

import pytest
from pydicom import dcmread

from inference.cad_codes import MAMMOGRAPHY_CAD_SR
from inference.cad_report import cad_report
from testkit import phantoms
from testkit.peers import dciodvfy_errors, sr_template_findings_of
from tests.inference.test_reports import BREAST_MODEL, breast_outcome, content_text, round_trip
from triage import evidence
from triage.evidence import Gate
from triage.outcomes import Decision

OUTSIDE_THE_VALIDATORS_TID_4000 = (
    "Device Observer", "Observer Type", "99TRIAGE", "CAD Operating Point", "REFERENCE", "/IMAGE:",
)  # fmt: skip


def items(sequence, value):
    """Every content item in the tree whose concept name has this code value."""
    for item in sequence:
        names = item.get("ConceptNameCodeSequence") or []
        if names and (names[0].get("CodeValue") or names[0].get("LongCodeValue")) == value:
            yield item
        yield from items(item.get("ContentSequence") or [], value)


def written(tmp_path, report, name="cad"):
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(round_trip(report)[1])
    return path


@pytest.mark.integration
def test_the_cad_sr_passes_both_validators_and_says_what_the_screen_showed(tmp_path):
    views = phantoms.screen("L", seed=5, size=128)
    scores = (3, None)
    paths = [
        written(
            tmp_path,
            cad_report(views, breast_outcome(views, s), BREAST_MODEL, 1, operating_point=0.1),
            str(s),
        )
        for s in scores
    ]
    for score, path, (errors, warnings) in zip(scores, paths, sr_template_findings_of(paths), strict=True):
        assert dciodvfy_errors(path) == []
        assert errors == []
        unexpected = [w for w in warnings if not any(known in w for known in OUTSIDE_THE_VALIDATORS_TID_4000)]
        assert unexpected == [], "only triage's own items and those the validator's template lacks"
        said_what_it_showed(path, views, score)


def said_what_it_showed(path, views, score):
    report = dcmread(path)
    assert report.SOPClassUID == MAMMOGRAPHY_CAD_SR and report.Modality == "SR"
    assert report.ContentTemplateSequence[0].TemplateIdentifier == "4000"
    [library] = items(report.ContentSequence, "111028")
    assert [e.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for e in library.ContentSequence] == [
        str(ds.SOPInstanceUID) for ds in views
    ]
    sides = [e.ContentSequence[0].ConceptCodeSequence[0].CodeValue for e in library.ContentSequence]
    assert sides == ["80248007" if ds.ImageLaterality == "L" else "73056007" for ds in views]
    [summary] = items(report.ContentSequence, "111017")
    text = content_text(path)
    assert "Mammography CAD Report" in text
    if score is None:
        assert summary.ConceptCodeSequence[0].CodeValue == "111245", "no algorithms succeeded"
        assert [d.ConceptCodeSequence[0].CodeValue for d in items(report.ContentSequence, "111064")] == [
            "111225"
        ]
        assert "incomplete screen" in text
        assert list(items(report.ContentSequence, "111059")) == []
        return
    assert summary.ConceptCodeSequence[0].CodeValue == "111242", "all algorithms succeeded, with findings"
    [finding] = items(report.ContentSequence, "111059")
    assert finding.ConceptCodeSequence[0].CodeValue == "129793001"
    [outline] = items(finding.ContentSequence, "111041")
    assert list(outline.GraphicData) == [5.0, 6.0, 30.0, 6.0, 30.0, 40.0, 5.0, 40.0, 5.0, 6.0]
    assert outline.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == str(
        views[0].SOPInstanceUID
    ), "the outline is on the view the lesion was found on"
    [certainty] = items(finding.ContentSequence, "111012")
    assert float(certainty.MeasuredValueSequence[0].NumericValue) == 42.0
    [operating_point] = items(finding.ContentSequence, "111071")
    assert float(operating_point.MeasuredValueSequence[0].NumericValue) == 0.1
    [intent] = items(finding.ContentSequence, "111056")
    assert intent.ConceptCodeSequence[0].CodeValue == "111150", "presentation required"
    [exam_score] = items(report.ContentSequence, "EXAM-SCORE")
    assert int(exam_score.MeasuredValueSequence[0].NumericValue) == score
    [route] = items(report.ContentSequence, "ROUTE")
    assert route.ConceptCodeSequence[0].CodeValue == ("SINGLE-READ" if score <= 5 else "DOUBLE-READ")


def test_boxes_the_evidence_does_not_support_are_kept_but_not_for_presentation():
    views = phantoms.screen("L", seed=5, size=128)
    gate = Gate(not_enabled={Decision.BOXES: "mAP@50 0.02 is below the site's bar (0.3)"})
    outcome = evidence.apply(breast_outcome(views, 7), gate)
    report, _ = round_trip(cad_report(views, outcome, BREAST_MODEL, 1))
    [finding] = items(report.ContentSequence, "111059")
    [intent] = items(finding.ContentSequence, "111056")
    assert intent.ConceptCodeSequence[0].CodeValue == "111152", "a workstation is not to draw it"


def test_a_rebuilt_cad_sr_is_the_same_object():
    views = phantoms.screen("L", seed=5, size=128)
    first = cad_report(views, breast_outcome(views, 7), BREAST_MODEL, 1)
    again = cad_report(views, breast_outcome(views, 7), BREAST_MODEL, 1)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert cad_report(views, breast_outcome(views, 7), BREAST_MODEL, 2).SOPInstanceUID != first.SOPInstanceUID
