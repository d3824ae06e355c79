from pathlib import Path

import pytest
from pydantic import ValidationError

from dicom_node import routing
from testkit import synthetic
from triage.cards import DEFAULT_INTENDED_USE, IntendedUse
from triage.header_facts import header_facts
from triage.pipelines import Pipeline

REPO_ROUTING = Path(__file__).resolve().parents[2] / "configs" / "routing.yaml"


@pytest.fixture(scope="module")
def config() -> routing.RoutingConfig:
    return routing.RoutingConfig.load(REPO_ROUTING)


def facts(datasets) -> list[routing.InstanceFacts]:
    return [
        routing.InstanceFacts(
            f"k/{ds.SOPInstanceUID}",
            str(ds.SOPInstanceUID),
            str(ds.SOPClassUID),
            "0" * 64,
            header_facts(ds),
        )
        for ds in datasets
    ]


def test_trauma_radiograph_goes_to_fracture(config):
    decision = routing.route(config, facts([synthetic.dx(body_part="WRIST")]))
    assert isinstance(decision, routing.Route)
    assert decision.pipeline == "fracture"
    assert routing.gate(config, decision, None) is decision


def test_chest_radiograph_is_not_a_trauma_study(config):
    decision = routing.route(config, facts([synthetic.dx(body_part="CHEST")]))
    assert isinstance(decision, routing.Unrouted)
    assert "body part CHEST is not in the intended use" in decision.reason


def test_instances_a_rule_does_not_take_are_listed_as_skipped(config):
    ids = synthetic.StudyIds()
    wrist, chest = synthetic.dx(ids, body_part="WRIST"), synthetic.dx(ids, body_part="CHEST")
    decision = routing.route(config, facts([wrist, chest]))
    assert isinstance(decision, routing.Route)
    assert [i.sop_instance_uid for i in decision.analysed] == [wrist.SOPInstanceUID]
    assert "CHEST" in decision.skipped[chest.SOPInstanceUID]


def test_four_view_screen_passes_the_gate(config):
    decision = routing.route(config, facts(synthetic.screen()))
    assert isinstance(decision, routing.Route) and decision.pipeline == "breast"
    assert routing.expected_views_present(config, decision)
    assert routing.gate(config, decision, None) is decision


def test_two_of_four_views_is_an_incomplete_screen(config):
    decision = routing.route(config, facts(synthetic.screen(views=("L-CC", "R-CC"))))
    assert isinstance(decision, routing.Route)
    assert not routing.expected_views_present(config, decision)
    outcome = routing.gate(config, decision, None)
    assert isinstance(outcome, routing.NotAnalysed)
    assert outcome.reason == "incomplete screen: missing L-MLO, R-MLO"


def test_implant_is_outside_intended_use(config):
    decision = routing.route(config, facts(synthetic.screen(implant="YES")))
    outcome = routing.gate(config, decision, None)
    assert isinstance(outcome, routing.NotAnalysed)
    assert "breast implant" in outcome.reason


@pytest.mark.parametrize(
    ("value", "meaning", "shown"),
    [
        ("399055006", "Spot Compression", "spot compression"),
        ("399163009", "Magnification", "magnification"),
        ("R-102D2", "Spot compression", "spot compression"),  # a retired code, known by its meaning
    ],
)
def test_a_spot_compression_or_magnified_view_makes_it_no_screen(config, value, meaning, shown):
    """A work-up image counts as no CC or MLO: the four views around it are a diagnostic exam."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    views = synthetic.screen()
    extra = synthetic.screen(views=("L-CC",))[0]
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator, modifier.CodeMeaning = value, "SCT", meaning
    extra.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence([modifier])
    extra.StudyInstanceUID = views[0].StudyInstanceUID
    assert header_facts(extra).view_modifier == shown.upper()
    outcome = routing.gate(config, routing.route(config, facts([*views, extra])), None)
    assert isinstance(outcome, routing.NotAnalysed)
    assert f"a diagnostic view ({shown}) is present" in outcome.reason
    assert header_facts(views[0]).view_modifier == "", "a plain view has none"


def test_missing_laterality_is_outside_intended_use(config):
    views = synthetic.screen()
    del views[0].ImageLaterality
    outcome = routing.gate(config, routing.route(config, facts(views)), None)
    assert isinstance(outcome, routing.NotAnalysed)
    assert "no laterality" in outcome.reason and "missing L-CC" in outcome.reason


def test_view_read_from_view_code_sequence_before_view_position():
    ds = synthetic.mg(view="MLO")
    ds.ViewPosition = ""
    assert header_facts(ds).view == "MLO"


def test_mammogram_for_processing_is_stored_not_analysed(config):
    ds = synthetic.mg()
    ds.SOPClassUID = (
        "1.2.840.10008.5.1.4.1.1.1.2.1"  # Digital Mammography X-Ray Image Storage - For Processing
    )
    decision = routing.route(config, facts([ds]))
    assert isinstance(decision, routing.Unrouted)
    assert "For Processing is not analysed" in decision.reason


def test_unknown_sop_class_keyword_is_refused_when_loading():
    with pytest.raises(ValidationError, match="NotASopClass"):
        routing.Rule(name="x", pipeline="p", modalities=["DX"], sop_classes=["NotASopClass"])


def test_rule_naming_an_undefined_pipeline_is_refused(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(
        "pipelines: {}\nunrouted_quiet_period_seconds: 1\n"
        "rules: [{name: r, pipeline: nowhere, modalities: [DX],"
        " sop_classes: [DigitalXRayImageStorageForPresentation]}]\n"
    )
    with pytest.raises(ValidationError, match="pipeline"):
        routing.RoutingConfig.load(path)


def test_a_pipeline_without_rules_of_its_own_is_refused(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(
        "pipelines: {}\nunrouted_quiet_period_seconds: 1\n"
        "rules: [{name: r, pipeline: fracture, modalities: [DX],"
        " sop_classes: [DigitalXRayImageStorageForPresentation]}]\n"
    )
    with pytest.raises(ValidationError, match="pipeline 'fracture', which is not defined"):
        routing.RoutingConfig.load(path)


def test_the_model_card_can_narrow_what_the_routing_file_sends(config):
    """routing.yaml takes a hip radiograph; a card whose intended use is hands and wrists does not."""
    hands = IntendedUse(
        statement="hands", **DEFAULT_INTENDED_USE[Pipeline.FRACTURE], body_parts=("HAND", "WRIST")
    )
    wrist = routing.route(config, facts([synthetic.dx(body_part="WRIST")]))
    assert routing.gate(config, wrist, hands) is wrist
    hip = routing.route(config, facts([synthetic.dx(body_part="HIP")]))
    outcome = routing.gate(config, hip, hands)
    assert isinstance(outcome, routing.NotAnalysed)
    assert "body part HIP is outside the model's intended use" in outcome.reason


def test_a_mammogram_view_the_card_does_not_know_is_outside_its_intended_use(config):
    views = synthetic.screen()
    views[0].ViewCodeSequence[0].CodeValue, views[0].ViewCodeSequence[0].CodeMeaning = "X", "SPOT"
    views[0].ViewPosition = ""
    screens = IntendedUse(statement="screens", **DEFAULT_INTENDED_USE[Pipeline.BREAST])
    outcome = routing.gate(config, routing.route(config, facts(views)), screens)
    assert isinstance(outcome, routing.NotAnalysed) and "view SPOT is outside" in outcome.reason


TRAUMA_USE = IntendedUse(statement="adults", **DEFAULT_INTENDED_USE[Pipeline.FRACTURE])


@pytest.mark.parametrize(
    ("age", "birth_date", "inside"),
    [
        ("", "19700101", True),  # 56 at the study (2026)
        ("", "20200601", False),  # a child of 5
        ("009Y", "", False),
        ("030Y", "20200601", True),  # Patient's Age wins over the birth date
        ("006M", "", False),
        ("", "", False),  # unknown: conservative by default
        ("", "2020", False),  # an unreadable birth date is no age
    ],
)
def test_a_childs_radiograph_is_never_eligible_for_discharge(config, age, birth_date, inside):
    ds = synthetic.dx()
    ds.PatientAge, ds.PatientBirthDate = age, birth_date
    outcome = routing.gate(config, routing.route(config, facts([ds])), TRAUMA_USE)
    if inside:
        assert isinstance(outcome, routing.Route)
    else:
        assert isinstance(outcome, routing.NotAnalysed) and "age" in outcome.reason


def test_a_card_may_accept_an_unknown_age():
    use = TRAUMA_USE.model_copy(update={"unknown_age_allowed": True})
    ds = synthetic.dx()
    ds.PatientBirthDate = ""
    assert use.why_not(str(ds.SOPClassUID), header_facts(ds)) is None
    assert "older" in str(
        use.model_copy(update={"max_age_years": 40}).why_not(
            str(synthetic.dx().SOPClassUID), header_facts(synthetic.dx())
        )
    )


def test_a_lossy_mammogram_is_not_a_screen(config):
    screens = IntendedUse(statement="screens", **DEFAULT_INTENDED_USE[Pipeline.BREAST])
    views = synthetic.screen()
    assert isinstance(routing.gate(config, routing.route(config, facts(views)), screens), routing.Route)
    views[2].LossyImageCompression = "01"
    outcome = routing.gate(config, routing.route(config, facts(views)), screens)
    assert isinstance(outcome, routing.NotAnalysed) and "lossily compressed" in outcome.reason


def test_a_lossy_transfer_syntax_counts_as_lossy():
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    ds = synthetic.screen()[0]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    assert not header_facts(ds).lossy
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    assert header_facts(ds).lossy
