"""Fracture SR (TID 1500): valid per dciodvfy, readable by dsrdump, faithful to its sources."""

import io
import re
import subprocess

import pytest
from pydicom import dcmread

from inference.reports import SERIES_DESCRIPTION, breast_report, fracture_report
from testkit import phantoms
from testkit.peers import dciodvfy_errors, require_tool
from triage.outcomes import BreastOutcome, FractureOutcome, ModelIdentity

MODEL = ModelIdentity("triage-fracture-demo", "1.0.0", "ab" * 32)


def outcome_for(datasets, state="FRACTURE"):
    if state is None:
        return FractureOutcome(reason="not analysed")
    return FractureOutcome.model_validate(
        {
            "state": state,
            "probability": 0.91,
            "images": [
                {
                    "sop_instance_uid": datasets[0].SOPInstanceUID,
                    "boxes": [{"corners": [10.0, 20.0, 60.0, 90.0], "score": 0.91}],
                },
                {"sop_instance_uid": datasets[1].SOPInstanceUID, "boxes": []},
            ],
        }
    )


BREAST_MODEL = ModelIdentity("triage-breast-demo", "1.0.0", "cd" * 32)


def breast_outcome(views, score):
    analysed = score is not None
    if not analysed:
        return BreastOutcome(reason="incomplete screen")
    return BreastOutcome.model_validate({
        "score": score,
        "route": "SINGLE_READ" if analysed and score <= 5 else "DOUBLE_READ",
        "high_risk": score == 10,
        "probability": 0.42 if analysed else None,
        "per_view": [
            {"sop_instance_uid": ds.SOPInstanceUID, "laterality": ds.ImageLaterality, "view": ds.ViewPosition,
             "probability": 0.42, "lesions": [{"corners": [5.0, 6.0, 30.0, 40.0], "score": 0.42}] if i == 0
             else []}
            for i, ds in enumerate(views)
        ],
    })  # fmt: skip


def content_text(path):
    return subprocess.run(
        [require_tool("dsrdump"), str(path)], capture_output=True, text=True, check=True
    ).stdout


def round_trip(sr):
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue())), buffer.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("state", ["FRACTURE", "DOUBT", "NO_FRACTURE", None])
def test_fracture_sr_passes_dciodvfy_and_dsrdump(tmp_path, state):
    sources = phantoms.trauma_study(True, seed=1, images=2)
    path = tmp_path / "sr.dcm"
    path.write_bytes(round_trip(fracture_report(sources, outcome_for(sources, state), MODEL, 1))[1])
    assert dciodvfy_errors(path) == []
    dump = subprocess.run([require_tool("dsrdump"), str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "Fracture" in dump.stdout and "triage-fracture-demo" in dump.stdout


def test_sr_copies_patient_and_study_and_says_it_is_unverified_ai():
    sources = phantoms.trauma_study(True, seed=2, images=2)
    sr, _ = round_trip(fracture_report(sources, outcome_for(sources), MODEL, 1))
    for keyword in ("PatientID", "IssuerOfPatientID", "PatientName", "StudyInstanceUID", "AccessionNumber"):
        assert sr.get(keyword) == sources[0].get(keyword), keyword
    assert sr.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.SeriesDescription == SERIES_DESCRIPTION
    ours = [e for e in sr.ContributingEquipmentSequence if e.Manufacturer == "triage (open source)"]
    assert [e.ManufacturerModelName for e in ours] == ["triage-fracture-demo 1.0.0"]
    assert MODEL.weights_sha256 in ours[0].SoftwareVersions


def test_rebuilding_a_report_gives_the_same_uids():
    sources = phantoms.trauma_study(True, seed=3, images=2)
    first = fracture_report(sources, outcome_for(sources), MODEL, 1)
    again = fracture_report(sources, outcome_for(sources), MODEL, 1)
    later = fracture_report(sources, outcome_for(sources), MODEL, 2)
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    assert later.SOPInstanceUID != first.SOPInstanceUID


@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 100", "Sørensen^Æsa"), ("ISO_IR 192", "Ågård^Søren")])
def test_danish_names_survive_in_the_source_character_set(charset, name):
    sources = phantoms.trauma_study(True, seed=4, images=2)
    for ds in sources:
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
    sr, _ = round_trip(fracture_report(sources, outcome_for(sources), MODEL, 1))
    assert str(sr.PatientName) == name
    assert sr.SpecificCharacterSet == charset


@pytest.mark.integration
@pytest.mark.parametrize("score", [3, 7, 10, None])
def test_breast_sr_codes_score_route_and_high_risk(tmp_path, score):
    views = phantoms.screen("L", seed=5, size=128)
    path = tmp_path / "sr.dcm"
    path.write_bytes(round_trip(breast_report(views, breast_outcome(views, score), BREAST_MODEL, 1))[1])
    assert dciodvfy_errors(path) == []
    text = content_text(path)
    route = "Double reading" if score is None or score > 5 else "Single reading"
    assert '"Reading route")=(' in text and route in text
    assert ('"High risk (score 10)")=(373066001,SCT,"Yes")' in text) == (score == 10)
    if score is None:
        assert "Not analysed by triage" in text and "AI exam risk score" not in text
    else:
        assert re.search(rf'"AI exam risk score \(1-10\)"\)="{score}(\.0)?"', text)
    assert "Lesion" in text and ("POLYLINE" in text) == (score is not None), "marks only on a scored screen"


@pytest.mark.integration
def test_not_analysed_reason_and_skipped_images_are_in_the_sr(tmp_path):
    sources = phantoms.trauma_study(False, seed=6, images=2)
    outcome = FractureOutcome(skipped={"1.2.3.4": "modality CT is not one of ['CR', 'DX']"})
    sr = fracture_report(sources, outcome, MODEL, 1, reason="pixel data cannot be decoded")
    path = tmp_path / "sr.dcm"
    path.write_bytes(round_trip(sr)[1])
    assert dciodvfy_errors(path) == []
    text = content_text(path)
    assert '"Reason not analysed")="pixel data cannot be decoded"' in text
    assert '"Image not analysed")="1.2.3.4: modality CT' in text
    texts = [item.TextValue for item in dcmread(path).ContentSequence if "TextValue" in item]
    assert "1.2.3.4: modality CT is not one of ['CR', 'DX']" in texts
    assert "Not analysed by triage" in text


@pytest.mark.integration
def test_the_evidence_gate_is_in_the_sr_coded_with_why(tmp_path):
    """A rule-out the evidence does not support: NORMAL-READING, a coded NOT-ENABLED item per
    decision off with why as TEXT, and no region for the boxes; an override is coded too."""
    from triage import evidence
    from triage.evidence import Gate
    from triage.outcomes import Decision

    sources = phantoms.trauma_study(False, seed=6, images=2)
    gate = Gate(
        not_enabled={Decision.BOXES: "mAP@50 0.01 is below the site's bar (0.3)"},
        overridden={Decision.RULE_OUT: "enabled against the evidence by cli:admin: local audit"},
    )
    off = Gate(not_enabled={Decision.RULE_OUT: "no rule-out evidence", **gate.not_enabled})
    for name, found, state in (("off", off, "NORMAL-READING"), ("overridden", gate, "NO-FRACTURE")):
        outcome = evidence.apply(outcome_for(sources, "NO_FRACTURE"), found)
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(round_trip(fracture_report(sources, outcome, MODEL, 1))[1])
        assert dciodvfy_errors(path) == []
        text = content_text(path)
        assert f"({state},99TRIAGE," in text and "POLYLINE" not in text
        assert '"Decision not enabled: evidence below the site\'s bar")=(LOCALISATION,99TRIAGE' in text
        texts = [item.TextValue for item in dcmread(path).ContentSequence if "TextValue" in item]
        assert "localisation (boxes): mAP@50 0.01 is below the site's bar (0.3)" in texts
        assert ('Decision enabled against the evidence by an admin")=(RULE-OUT,' in text) == (
            name == "overridden"
        )
    views = phantoms.screen("L", seed=5, size=128)
    screen = evidence.apply(
        breast_outcome(views, 3), Gate(not_enabled={Decision.SINGLE_READ: "no single-reading evidence"})
    )
    path = tmp_path / "screen.dcm"
    path.write_bytes(round_trip(breast_report(views, screen, BREAST_MODEL, 1))[1])
    assert dciodvfy_errors(path) == []
    text = content_text(path)
    assert "Double reading" in text and "(SINGLE-READING,99TRIAGE" in text
    assert re.search(r'"AI exam risk score \(1-10\)"\)="3(\.0)?"', text), "the score is kept, advisory"
