"""Logging keeps patient data out: pydicom's validators are silenced at their
source and tracebacks withhold exception messages. Run in a fresh interpreter: the switches are
process-wide, as they are in each service process."""

import subprocess
import sys

from testkit.peers import REPO

PROBE = r"""
import logging, warnings
from triage.logs import configure_logging
configure_logging()
warnings.simplefilter("always")
from pydicom import Dataset
ds = Dataset()
ds.PatientBirthDate = "1980-01-01"          # not a DA: pydicom's validator would print it
ds.PatientName = "CANARY" + "Q" * 70        # past PN's 64 characters
try:
    raise ValueError("Unable to convert 'CANARYDATE' to 'DA' object") from KeyError("CANARYKEY")
except ValueError:
    logging.getLogger("triage.probe").exception("reports could not be built")
"""


def test_no_library_message_quotes_a_value_and_tracebacks_keep_only_their_shape():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for canary in ("1980-01-01", "CANARY", "CANARYDATE", "CANARYKEY"):
        assert canary not in output, output
    assert "reports could not be built" in output
    assert "builtins.KeyError: (message withheld" in output
    assert "builtins.ValueError: (message withheld" in output
    assert output.index("KeyError") < output.index("ValueError"), "the cause first, as Python prints it"
    assert "line 11, in <module>" in output, "the frames stay, for whoever debugs it"
