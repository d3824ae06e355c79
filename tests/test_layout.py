"""Architecture rules that code review would otherwise have to catch."""

import subprocess
import sys

from tests.conftest import REPO


def test_the_dicom_node_never_imports_torch():
    code = "import sys, dicom_node.listener, dicom_node.scu, worklist.app; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "False"
