"""The DICOM Conformance Statement under docs/ is what the code does, not what it once did."""

from pydicom.uid import UID

from dicom_node.status import Status
from testkit.peers import REPO
from triage.cli.conformance import DOCUMENT, STATUS_MEANING, conformance_statement


def test_the_committed_statement_is_the_one_the_code_generates():
    committed = (REPO / DOCUMENT).read_text(encoding="utf-8")
    assert committed == conformance_statement(), (
        "docs/conformance.md and the code disagree: run `triage conformance` and review the difference"
    )


def test_every_status_the_listener_answers_with_is_explained():
    assert set(STATUS_MEANING) == {status.name for status in Status}


def test_the_statement_names_what_a_pacs_team_checks_first():
    text = conformance_statement()
    for needed in ("TRIAGE_AE_TITLE", "11112", "A900H", "C000H", "A700H", "99TRIAGE", "UNVERIFIED"):
        assert needed in text, needed
    assert UID("1.2.840.10008.5.1.4.1.1.1.1").name in text, "Digital X-Ray storage is accepted"
    assert (
        "| Comprehensive 3D SR Storage | 1.2.840.10008.5.1.4.1.1.88.34 | Explicit VR Little Endian | SCU |"
        in text
    )
