"""The codes of the Mammography CAD SR (``inference.cad_report``): DICOM's and SNOMED CT's, as
PS3.16 TID 4000 and its context groups name them."""

from __future__ import annotations

from pydicom.sr.coding import Code

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"


def _dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


REPORT = _dcm("111036", "Mammography CAD Report")
LANGUAGE = Code("121049", "DCM", "Language of Content Item and Descendants")
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
IMAGE_LIBRARY = _dcm("111028", "Image Library")
IMAGE_LATERALITY = _dcm("111027", "Image Laterality")
IMAGE_VIEW = _dcm("111031", "Image View")
SUMMARY = _dcm("111017", "CAD Processing and Findings Summary")
WITH_FINDINGS = _dcm("111242", "All algorithms succeeded; with findings")
WITHOUT_FINDINGS = _dcm("111241", "All algorithms succeeded; without findings")
NONE_SUCCEEDED = _dcm("111245", "No algorithms succeeded; without findings")
INDIVIDUAL = _dcm("111034", "Individual Impression/Recommendation")
RENDERING_INTENT = _dcm("111056", "Rendering Intent")
PRESENTATION_REQUIRED = _dcm("111150", "Presentation Required: Rendering device is expected to present")
NOT_FOR_PRESENTATION = _dcm("111152", "Not for Presentation: Rendering device expected not to present")
# CID 6014 (Mammography Single Image Finding) has no "Mass"; its term for an abnormal density seen on
# one view is this one, and it is what each lesion the model marks is reported as.
DENSITY = Code("129793001", "SCT", "Mammography breast density")
SINGLE_IMAGE_FINDING = _dcm("111059", "Single Image Finding")
CERTAINTY = _dcm("111012", "Certainty of Finding")
OPERATING_POINT = _dcm("111071", "CAD Operating Point")
OUTLINE = _dcm("111041", "Outline")
CENTER = _dcm("111010", "Center")
PERCENT = Code("%", "UCUM", "Percent")
NO_UNITS = Code("1", "UCUM", "no units")
DETECTIONS = _dcm("111064", "Summary of Detections")
ANALYSES = _dcm("111065", "Summary of Analyses")
SUCCESSFUL_DETECTIONS = _dcm("111063", "Successful Detections")
SUCCESSFUL_ANALYSES = _dcm("111062", "Successful Analyses")
DETECTION_PERFORMED = _dcm("111022", "Detection Performed")
ANALYSIS_PERFORMED = _dcm("111004", "Analysis Performed")
OVERALL_ANALYSIS = _dcm("111234", "Overall Impression / Recommendation Analysis")
ALGORITHM_NAME = _dcm("111001", "Algorithm Name")
ALGORITHM_VERSION = _dcm("111003", "Algorithm Version")
SUCCEEDED = _dcm("111222", "Succeeded")
NOT_ATTEMPTED = _dcm("111225", "Not Attempted")
LATERALITY = {"R": Code("73056007", "SCT", "Right breast"), "L": Code("80248007", "SCT", "Left breast")}
VIEWS = {
    "CC": Code("399162004", "SCT", "cranio-caudal"),
    "MLO": Code("399368009", "SCT", "medio-lateral oblique"),
}
