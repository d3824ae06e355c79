"""triage's private codes (coding scheme ``99TRIAGE``; PS3.16 8.2: private schemes begin with 99):
the states, routes, scores and decisions no standard codes, shared by the DICOM SR and the HL7
messages so both say the same thing in the same words. The conformance statement lists them."""

from __future__ import annotations

from pydicom.sr.coding import Code

from triage.outcomes import Decision, Verdict

SCHEME = "99TRIAGE"
# Code values keep the hyphenated spelling PACS configurations already match on.
STATE_CODES = {
    Verdict.FRACTURE: Code("FRACTURE", SCHEME, "Fracture suspected (high-specificity operating point)"),
    Verdict.DOUBT: Code("DOUBT", SCHEME, "Fracture possible (high-sensitivity operating point)"),
    Verdict.NO_FRACTURE: Code(
        "NO-FRACTURE", SCHEME, "No fracture found; eligible for discharge per local protocol"
    ),
    Verdict.NORMAL_READING: Code(
        "NORMAL-READING", SCHEME, "Below DOUBT, rule-out not enabled for this model; read as usual"
    ),
    Verdict.NOT_ANALYSED: Code("NOT-ANALYSED", SCHEME, "Not analysed by triage; read as usual"),
}
# The evidence gate (triage.evidence): each decision the model's evidence does not support, or that an
# admin enabled against it, is a coded item of the study's conclusions; why, as TEXT beside them.
DECISION_CODES = {
    Decision.RULE_OUT: Code("RULE-OUT", SCHEME, "Rule-out (eligible for discharge)"),
    Decision.SINGLE_READ: Code("SINGLE-READING", SCHEME, "Single reading"),
    Decision.BOXES: Code("LOCALISATION", SCHEME, "Localisation (boxes)"),
}
DECISION_NOT_ENABLED = Code("NOT-ENABLED", SCHEME, "Decision not enabled: evidence below the site's bar")
DECISION_OVERRIDDEN = Code("OVERRIDDEN", SCHEME, "Decision enabled against the evidence by an admin")
WHY_NOT_ENABLED = Code("WHY-NOT-ENABLED", SCHEME, "Why a decision is not enabled")
WHY_OVERRIDDEN = Code("WHY-OVERRIDDEN", SCHEME, "Who enabled a decision against the evidence, and why")
ANALYSED = Code("ANALYSED", SCHEME, "Analysed by triage")
TRIAGE_STATE = Code("STATE", SCHEME, "Triage state")
LESION_SCORE = Code("LESION-SCORE", SCHEME, "AI lesion score")
EXAM_SCORE = Code("EXAM-SCORE", SCHEME, "AI exam risk score (1-10)")
# The models' 0-1 outputs are scores, not calibrated probabilities (the cards give their calibration
# error), so they are named that: a number called a probability must behave as one.
EXAM_PROBABILITY = Code("EXAM-MODEL-SCORE", SCHEME, "AI exam model score (0-1, not a calibrated probability)")
READING_ROUTE = Code("ROUTE", SCHEME, "Reading route")
# The Mammography CAD SR (TID 4000) has no place for an exam score: this container holds triage's exam
# result (score, model score, route, HIGH-RISK, why not analysed) in its findings summary.
EXAM_RESULT = Code("EXAM-RESULT", SCHEME, "AI exam result (triage)")
ROUTE_CODES = {
    Verdict.SINGLE_READ: Code("SINGLE-READ", SCHEME, "Single reading"),
    Verdict.DOUBLE_READ: Code("DOUBLE-READ", SCHEME, "Double reading"),
}
HIGH_RISK = Code("HIGH-RISK", SCHEME, "High risk (score 10)")
REASON = Code("REASON-NOT-ANALYSED", SCHEME, "Reason not analysed")
IMAGE_NOT_ANALYSED = Code("IMAGE-NOT-ANALYSED", SCHEME, "Image not analysed")
FRACTURE_SCORE = Code("FRACTURE-SCORE", SCHEME, "AI fracture score")
STUDY_SCORE = Code(
    "STUDY-FRACTURE-SCORE", SCHEME, "AI study fracture score (0-1, not a calibrated probability)"
)
# The operating points in force when the result was made, frozen with it (a site that moves its
# single-reading threshold, as the Capital Region went from 5 to 7, leaves each SR saying which held).
DOUBT_THRESHOLD = Code("DOUBT-THRESHOLD", SCHEME, "DOUBT operating point in force (0-1 model score)")
FRACTURE_THRESHOLD = Code("FRACTURE-THRESHOLD", SCHEME, "FRACTURE operating point in force (0-1 model score)")
SINGLE_READ_THRESHOLD = Code("SINGLE-READ-THRESHOLD", SCHEME, "Single reading at exam scores up to (1-10)")
# HL7 results carry these beside the states above (DICOM's own codes name the algorithm and the study).
SR_INSTANCE = Code("SR-INSTANCE-UID", SCHEME, "SOP Instance UID of the AI result SR")
NOT_VERIFIED = "AI-generated triage result, not verified by a radiologist"
