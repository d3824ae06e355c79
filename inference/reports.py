"""Results -> DICOM Structured Reports (TID 1500, via highdicom), for the PACS and its viewers.

Codes are DICOM's or SNOMED CT's where one exists ("Fracture" is SCT 72704001). The triage states
and scores have no standard code, so they use the private coding scheme ``99TRIAGE`` (PS3.16 8.2:
private schemes begin with 99), listed in ``TRIAGE_CODES`` and documented in the README.
The SOP Instance UID is derived from the study, its version and the model, so a re-sent or
re-built report is the same object to the PACS, never a second, different report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from triage import __version__

FRACTURE = Code("72704001", "SCT", "Fracture")
SCHEME = "99TRIAGE"
TRIAGE_CODES = {
    "FRACTURE": Code("FRACTURE", SCHEME, "Fracture suspected (high-specificity operating point)"),
    "DOUBT": Code("DOUBT", SCHEME, "Fracture possible (high-sensitivity operating point)"),
    "NO FRACTURE": Code(
        "NO-FRACTURE", SCHEME, "No fracture found; eligible for discharge per local protocol"
    ),
    "NOT ANALYSED": Code("NOT-ANALYSED", SCHEME, "Not analysed by triage; read as usual"),
}
TRIAGE_STATE = Code("STATE", SCHEME, "Triage state")
FRACTURE_SCORE = Code("FRACTURE-SCORE", SCHEME, "AI fracture score")
STUDY_SCORE = Code("STUDY-FRACTURE-PROBABILITY", SCHEME, "AI study fracture probability")
NO_UNITS = Code("1", "UCUM", "no units")
SERIES_DESCRIPTION = "AI-generated triage result, not verified by a radiologist"


def report_uid(study_instance_uid: str, version: int, model_name: str, model_version: str, kind: str) -> str:
    """A UID that is the same whenever the same result is reported again."""
    return str(generate_uid(entropy_srcs=[study_instance_uid, str(version), model_name, model_version, kind]))


def _algorithm(model: dict[str, str]) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model["name"],
        version=model["version"],
        parameters=[f"weights SHA-256 {model['weights_sha256']}"],
    )


def _observation_context(model: dict[str, str]) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=report_uid("device", 0, model["name"], model["version"], "device"),
        name="triage",
        manufacturer_name="triage (open source)",
        model_name=f"{model['name']} {model['version']}",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def fracture_report(
    sources: Sequence[Dataset], outcome: dict[str, Any], model: dict[str, str], version: int
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 report: one planar region per box on its source image, and the study's state."""
    algorithm = _algorithm(model)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    groups: list[Any] = []
    for image in outcome.get("images", []):
        source = by_uid[image["sop_instance_uid"]]
        for number, box in enumerate(image["boxes"], start=1):
            x0, y0, x1, y1 = box["corners"]
            region = hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32),
                source_image=hd.sr.SourceImageForRegion.from_source_image(source),
            )
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=report_uid(source.SOPInstanceUID, number, model["name"], model["version"], "roi"),
                        identifier=f"fracture {number} on image {source.get('InstanceNumber', '')}",
                    ),
                    referenced_region=region,
                    finding_type=FRACTURE,
                    algorithm_id=algorithm,
                    measurements=[
                        hd.sr.Measurement(name=FRACTURE_SCORE, value=float(box["score"]), unit=NO_UNITS)
                    ],
                )
            )
    state = outcome.get("state", "NOT ANALYSED")
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=report_uid(
                    str(sources[0].StudyInstanceUID), version, model["name"], model["version"], "study"
                ),
                identifier="study result",
            ),
            finding_type=FRACTURE,
            algorithm_id=algorithm,
            measurements=[
                hd.sr.Measurement(name=STUDY_SCORE, value=float(outcome["probability"]), unit=NO_UNITS)
            ]
            if "probability" in outcome
            else None,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(name=TRIAGE_STATE, value=TRIAGE_CODES[state])
            ],
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(model),
        procedure_reported=codes.SCT.PlainRadiography,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    study_uid = str(sources[0].StudyInstanceUID)
    return hd.sr.Comprehensive3DSR(
        evidence=list(sources),
        content=report,
        series_instance_uid=report_uid(study_uid, version, model["name"], model["version"], "sr-series"),
        series_number=9901,
        sop_instance_uid=report_uid(study_uid, version, model["name"], model["version"], "sr"),
        instance_number=1,
        manufacturer="triage (open source)",
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SERIES_DESCRIPTION,
        contributing_equipment=[
            hd.ContributingEquipment(
                manufacturer="triage (open source)",
                purpose_of_reference=codes.DCM.ProcessingEquipment,
                manufacturer_model_name=f"{model['name']} {model['version']}",
                software_versions=[__version__, model["weights_sha256"][:64]],
            )
        ],
    )
