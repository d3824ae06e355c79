"""The DICOM Conformance Statement (PS3.2 Annex A layout), its tables generated from the code.

Every table below is read from what the service really does: the listener's application entity as
``dicom_node.scp.build_ae`` builds it, the statuses of ``dicom_node.status``, the objects
``inference.reports`` and ``inference.withdrawal`` write (built here on a made-up source image and
listed attribute by attribute), and the private codes those modules define. ``docs/conformance.md``
is this module's output; a test fails when the two disagree, so the document cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydicom
import pynetdicom
import typer
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import UID
from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)

from triage import __version__
from triage.settings import Settings

DOCUMENT = Path("docs/conformance.md")
VERIFICATION = "1.2.840.10008.1.1"
STUDY = "1.2.826.0.1.3680043.8.498.1"

# What each status the listener answers with means for the sender. The statuses themselves are the
# code's (dicom_node.status.Status); a status without a line here fails the conformance test.
STATUS_MEANING = {
    "SUCCESS": "The instance is on disk (fsynced) and recorded; the sender may delete its copy.",
    "PROCESSING_FAILURE": "An unexpected fault while keeping the instance; nothing kept. Send it again.",
    "OUT_OF_RESOURCES": "Storage full, below its free-space floor, or the database unavailable; nothing "
    "kept. Send it again later.",
    "DATA_SET_DOES_NOT_MATCH_SOP_CLASS": "The data set's SOP Class or Instance UID is missing, malformed, "
    "or differs from the one negotiated; the file is quarantined with the reason.",
    "CANNOT_UNDERSTAND": "The data set cannot be parsed; the bytes are quarantined with the reason.",
}


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    return [_row(*header), _row(*("---" for _ in header)), *(_row(*r) for r in rows), ""]


def _source(study: str, instance: str) -> Dataset:
    """A made-up DX image header, the kind of source every created object copies from."""
    ds = Dataset()
    ds.SOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.1"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "ID1", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "ACC1", "S1"
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "Ref^Doc", "DX", 3, 7
    ds.ImageLaterality = "L" if study.endswith("1") else "R"  # differs between the two builds compared
    ds.ViewPosition, ds.BodyPartExamined = "AP", "HAND"
    ds.Rows, ds.Columns = 64, 64
    ds.PatientOrientation = ["A", "F"]
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


def _created(study: str, model_version: str) -> dict[str, Dataset]:
    """One of each object triage writes, for a made-up study."""
    from inference.inputs import SourceImage, StudyImages
    from inference.reports import fracture_report, report_uid
    from inference.summary import render, summary_image
    from inference.withdrawal import rejection_note
    from triage.imaging import header_facts
    from triage.messages import InstanceRef
    from triage.outcomes import FractureOutcome, ModelIdentity

    source = _source(study, f"{study}.1.1")
    model = ModelIdentity("triage-fracture-lite0", model_version, "ab" * 32)
    outcome = FractureOutcome.model_validate(
        {
            "state": "FRACTURE",
            "probability": 0.9,
            "images": [
                {
                    "sop_instance_uid": source.SOPInstanceUID,
                    "boxes": [{"corners": [1, 2, 30, 40], "score": 0.9}],
                }
            ],
        }
    )
    ref = InstanceRef(
        sop_instance_uid=source.SOPInstanceUID,
        sop_class_uid=source.SOPClassUID,
        storage_key="k",
        sha256="0" * 64,
    )
    images = StudyImages((SourceImage(ref, source, header_facts(source), np.zeros((64, 64), np.float32)),))
    sr = fracture_report([source], outcome, model, 1)
    uids = [report_uid(study, 1, model.name, model.version, kind) for kind in ("sc-series", "sc")]
    sc = summary_image(images, render(images, outcome, "", f"{model.name} {model.version}"), *uids)
    return {"sr": sr, "sc": sc, "kos": rejection_note([sr, sc], study, 1)}


def _attribute_rows(name: str) -> list[tuple[str, str, str]]:
    """Each top-level attribute of one created object, with its value or where the value comes from,
    found by building the object twice (two studies, two model versions) and comparing."""
    first = _created(STUDY, "1.0.0")
    second = _created(f"{STUDY}0", "2.0.0")
    sources = (_source(STUDY, f"{STUDY}.1.1"),)
    a, b = first[name], second[name]
    rows = []
    for element in a:
        keyword = element.keyword or str(element.tag)
        other = b.get(element.tag)
        copied = any(keyword in s and str(s[keyword].value) == str(element.value) for s in sources)
        if copied and keyword not in ("SpecificCharacterSet",):
            origin = "copied from the source images"
        elif keyword in ("SpecificCharacterSet",):
            origin = "the source images' (their names are copied as they are)"
        elif element.VR in ("DA", "TM", "DT"):
            origin = "when the object is written"
        elif element.VR == "SQ":
            origin = "sequence: see below" if keyword == "ContentSequence" else "sequence, built per result"
        elif element.VR == "UI" and other is not None and other.value != element.value:
            origin = "derived from the study, its version and the model (the same on every re-send)"
        elif other is not None and other.value != element.value:
            origin = "per result (from the study's images and the model)"
        elif keyword == "PixelData":
            origin = "the rendered summary"
        else:
            value = element.value
            shown = value.name if isinstance(value, UID) and value.is_valid else str(value)
            origin = f"`{shown[:80]}`"
        rows.append((f"({element.tag.group:04X},{element.tag.element:04X})", keyword, origin))
    return rows


def _private_codes() -> list[Code]:
    from triage import codes

    found: dict[tuple[str, str], Code] = {}
    for value in vars(codes).values():
        items = value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, Code) and item.scheme_designator == codes.SCHEME:
                found.setdefault((item.value, item.meaning), item)
    return sorted(found.values(), key=lambda c: c.value)


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def conformance_statement() -> str:
    """The whole statement, as Markdown."""
    from dicom_node.scp import build_ae
    from dicom_node.status import Status
    from inference.reports import SERIES_DESCRIPTION, SR_CLASSES

    ae = build_ae(Settings.model_construct(**{**_defaults(), "allowed_calling_aes": ("*",)}))
    contexts = sorted(ae.supported_contexts, key=lambda c: str(UID(str(c.abstract_syntax)).name))
    storage = [c for c in contexts if c.abstract_syntax != VERIFICATION]
    syntaxes = [UID(s) for s in storage[0].transfer_syntax]
    assert all(c.transfer_syntax == storage[0].transfer_syntax for c in storage), "one list for all"
    (verification,) = [c for c in contexts if c.abstract_syntax == VERIFICATION]
    written = {
        str(ds.SOPClassUID): UID(ds.file_meta.TransferSyntaxUID) for ds in _created(STUDY, "1.0.0").values()
    }
    sr_uids = {
        "Comprehensive3DSR": pydicom.uid.Comprehensive3DSRStorage,
        "ComprehensiveSR": pydicom.uid.ComprehensiveSRStorage,
    }
    proposed = [
        *(sr_uids[cls.__name__] for cls in SR_CLASSES),
        pydicom.uid.SecondaryCaptureImageStorage,
        pydicom.uid.KeyObjectSelectionDocumentStorage,
    ]
    lines = [
        "# triage DICOM Conformance Statement",
        "",
        f"triage {_major_minor()}. Generated by `triage conformance` from the code (PS3.2 Annex A layout);"
        " do not edit by hand: the tests fail when this document and the code disagree.",
        "",
        "## 1 Overview",
        "",
        "triage receives radiographs and mammograms from a PACS or modality (Storage SCP), analyses each"
        " complete study with an AI model, and sends the result back as DICOM objects (Storage SCU): a"
        " Structured Report (TID 1500), a Secondary Capture summary image, and, when it withdraws a"
        " result, a superseding report and an IOCM rejection note. Every result is preliminary and"
        f' unverified: series description "{SERIES_DESCRIPTION}".',
        "",
        *_table(
            ("SOP Classes", "User of Service (SCU)", "Provider of Service (SCP)"),
            [
                ("Verification", "Yes", "Yes"),
                (f"Every storage SOP class of Table 4 ({len(storage)} classes)", "No", "Yes"),
                *((p.name, "Yes", "Yes (as any storage class)") for p in proposed),
                (UID(StorageCommitmentPushModel).name, "Yes (`TRIAGE_PACS_STORAGE_COMMITMENT`)", "No"),
            ],
        ),
        "No media interchange. No query/retrieve, worklist or print services.",
        "",
        "## 2 Introduction",
        "",
        "Audience: the PACS and network teams connecting triage. Terms are those of PS3.2."
        " The settings named below (`TRIAGE_...`) are documented in the README.",
        "",
        "## 3 Networking",
        "",
        "### 3.1 Implementation model",
        "",
        "One application entity, the AE title of `TRIAGE_AE_TITLE`"
        f" (default `{_default('ae_title')}`), in two roles:",
        "",
        "- **Storage SCP** (the listener, port `TRIAGE_DICOM_PORT`, default"
        f" {_default('dicom_port')}): accepts C-ECHO and C-STORE; each instance is written to disk,"
        " fsynced and recorded before the success status goes back. A study is complete when no new"
        " instance arrived for a quiet period; it is then routed and queued for analysis.",
        "- **Storage SCU** (delivery): sends the result objects of a study to the PACS of `TRIAGE_PACS`,"
        " with the same AE title as calling AE title, and C-ECHOes it to show its reachability.",
        "",
        "Sequencing: results are sent after the analysis; a result set's report, which acts, goes last."
        " An object the PACS did not take is sent again with the same SOP Instance UID.",
        "",
        "### 3.2 AE specifications",
        "",
        "#### 3.2.1 Association policies",
        "",
        *_table(
            ("Policy", "Value"),
            [
                ("Application Context Name", "1.2.840.10008.3.1.1.1"),
                (
                    "Maximum PDU size received",
                    f"{_default('maximum_pdu_bytes')} bytes (`TRIAGE_MAXIMUM_PDU_BYTES`)",
                ),
                (
                    "Maximum concurrent associations (SCP)",
                    f"{_default('max_associations')} (`TRIAGE_MAX_ASSOCIATIONS`)",
                ),
                (
                    "ACSE / DIMSE / network timeouts",
                    "{} s / {} s / {} s".format(
                        _default("acse_timeout_seconds"),
                        _default("dimse_timeout_seconds"),
                        _default("network_timeout_seconds"),
                    ),
                ),
                ("Implementation Class UID", pynetdicom.PYNETDICOM_IMPLEMENTATION_UID),
                ("Implementation Version Name", pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION),
                ("Asynchronous operations", "not supported (one outstanding operation)"),
                (
                    "Extended negotiation",
                    "none; SCP/SCU role selection accepted only for Storage Commitment Push Model",
                ),
            ],
        ),
        "#### 3.2.2 Association acceptance (Storage SCP)",
        "",
        "The called AE title must be triage's. The calling AE title must be on `TRIAGE_ALLOWED_CALLING_AES`"
        " (`*`: any, on a trusted network); `TRIAGE_CALLING_AE_ADDRESSES` binds an AE title to the"
        " addresses it may call from and `TRIAGE_CALLING_AE_CERTIFICATES` to its TLS certificate. A refused"
        " association is rejected permanent by the service user, calling or called AE title not recognised"
        " (A-ASSOCIATE-RJ 1, 1, 3 or 7), and audited.",
        "",
        "Table 3: presentation contexts accepted, role SCP, no extended negotiation. Verification"
        f" ({VERIFICATION}) with {', '.join(UID(s).name for s in verification.transfer_syntax)}; every"
        " storage SOP class of Table 4 with each of these transfer syntaxes:",
        "",
        *_table(("Transfer Syntax", "UID"), ((s.name, str(s)) for s in syntaxes)),
        "Table 4: storage SOP classes accepted:",
        "",
        *_table(
            ("Abstract Syntax", "UID"),
            ((UID(str(c.abstract_syntax)).name, c.abstract_syntax) for c in storage),
        ),
        "Conformance level: Level 2 (Full) storage SCP. The instance is kept byte for byte as received;"
        " nothing is coerced. Only the SOP classes and transfer syntaxes a routing rule names are analysed;"
        " the others are kept and their study is marked NOT ANALYSED with the reason.",
        "",
        "Table 5: C-STORE and C-ECHO statuses returned:",
        "",
        *_table(
            ("Status", "Code", "Meaning"),
            ((s.name, f"{s.value:04X}H", STATUS_MEANING[s.name]) for s in Status),
        ),
        "#### 3.2.3 Association initiation (Storage SCU)",
        "",
        "One association per batch of result objects, proposing Verification and, per object, its SOP"
        " class with the transfer syntax it was written in. A PACS that refuses Comprehensive 3D SR gets"
        " the same report as Comprehensive SR. Only status 0000H counts as delivered: a warning (Bxxx) or"
        " failure is retried with backoff, up to `TRIAGE_DELIVERY_MAX_ATTEMPTS`"
        f" ({_default('delivery_max_attempts')}) attempts, and then marked FAILED on the worklist, where"
        " the study stays on the conservative path.",
        "",
        *_table(
            ("Abstract Syntax", "UID", "Transfer Syntax", "Role"),
            [
                (
                    "Verification",
                    VERIFICATION,
                    ", ".join(UID(s).name for s in DEFAULT_TRANSFER_SYNTAXES),
                    "SCU",
                ),
                *(
                    (p.name, str(p), written.get(str(p), written[str(proposed[0])]).name, "SCU")
                    for p in proposed
                ),
            ],
        ),
        "#### 3.2.4 Storage commitment (push model, optional)",
        "",
        "With `TRIAGE_PACS_STORAGE_COMMITMENT` on, once the PACS acknowledged every object of a result"
        " set, triage sends N-ACTION Request Storage Commitment (action type 1, SOP Instance"
        f" {StorageCommitmentPushModelInstance}) on an association proposing"
        f" {UID(StorageCommitmentPushModel).name} ({StorageCommitmentPushModel}) as SCU, listing each"
        " object as the PACS took it (its alternate's"
        " class where the PACS took that). The study is REPORTED only when the N-EVENT-REPORT (event"
        " type 1, or 2 with failures) commits every object. The listener accepts the report on an"
        " association the PACS opens, with the PACS as SCP or SCU of the class (the PACS must know"
        " triage's AE and be an allowed calling AE); a report on the request's own association is not"
        " awaited. Objects reported as failed are sent again with the same SOP Instance UIDs and committed"
        " again. No report within `TRIAGE_STORAGE_COMMITMENT_TIMEOUT_SECONDS`"
        f" ({_default('storage_commitment_timeout_seconds')} s): a new request (a new Transaction UID), up"
        f" to `TRIAGE_STORAGE_COMMITMENT_MAX_REQUESTS` ({_default('storage_commitment_max_requests')})"
        " per study; then the study goes back to the conservative path and what the PACS holds of it is"
        " rejected.",
        "",
        "### 3.3 Network interfaces",
        "",
        "TCP/IP (IPv4 and IPv6 as the host offers). DICOM over TLS 1.2 or newer on the listener when"
        " `TRIAGE_TLS_CERTIFICATE` and `TRIAGE_TLS_PRIVATE_KEY` are set (client certificates required with"
        " `TRIAGE_TLS_CLIENT_CA`), and to the PACS with `TRIAGE_PACS_TLS_CA`.",
        "",
        "## 4 Support of character sets",
        "",
        "Any Specific Character Set is accepted and kept. Created objects copy the source images'"
        " Specific Character Set with the patient and study attributes, so names are never re-encoded.",
        "",
        "## 5 Security",
        "",
        "The calling-AE allow-list, address and certificate bindings, and TLS above. Every association"
        " refused, every result delivered or withdrawn and every view of a patient's data is audited"
        " (optionally forwarded to syslog over TLS). No patient data is written to the logs.",
        "",
        "## 6 Created SOP instances",
        "",
    ]
    for name, title in (
        ("sr", "Comprehensive 3D SR (also sent as Comprehensive SR), TID 1500 Measurement Report"),
        ("sc", "Secondary Capture Image (the summary image, burned-in annotation)"),
        ("kos", "Key Object Selection, 113037 Rejected for Patient Safety Reasons (a withdrawn result)"),
    ):
        lines += [f"### {title}", "", *_table(("Tag", "Attribute", "Value or source"), _attribute_rows(name))]
    lines += [
        'The report\'s content tree is described in the README ("Results in the PACS"); its private codes:',
        "",
        "## 7 Private coding scheme",
        "",
        "Coding Scheme Designator `99TRIAGE` (PS3.16 8.2: private schemes begin with 99), version"
        f" {_major_minor()}, for the triage states and scores that have no standard code, in the SRs"
        " and in the HL7 results:",
        "",
        *_table(("Code Value", "Code Meaning"), ((c.value, c.meaning) for c in _private_codes())),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _defaults() -> dict[str, Any]:
    return {
        name: field.get_default(call_default_factory=True) for name, field in Settings.model_fields.items()
    }


def _major_minor() -> str:
    return ".".join(__version__.split(".")[:2])


def conformance(
    out: Annotated[Path, typer.Option("--out", help="Where to write it.")] = DOCUMENT,
) -> None:
    """Write the DICOM Conformance Statement, generated from the code, as Markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(conformance_statement(), encoding="utf-8")
    typer.echo(f"wrote {out}")
