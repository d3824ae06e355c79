"""The DIMSE status codes triage answers with (PS3.4 Annex B.2.3 for C-STORE, PS3.7 Annex C)."""

import enum


class Status(enum.IntEnum):
    """A C-ECHO or C-STORE response status."""

    SUCCESS = 0x0000
    # PS3.7 C.4.2: processing failure; the sender should retry later.
    PROCESSING_FAILURE = 0x0110
    # PS3.4 B.2.3 "Refused: Out of Resources" (A7xx): storage or the database could not keep it.
    OUT_OF_RESOURCES = 0xA700
    # PS3.4 B.2.3 "Error: Data Set does not match SOP Class" (A9xx).
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    # PS3.4 B.2.3 "Error: Cannot understand" (Cxxx): the data set could not be parsed.
    CANNOT_UNDERSTAND = 0xC000
