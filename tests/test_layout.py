"""Architecture rules that code review would otherwise have to catch."""

import subprocess
import sys

from testkit.peers import REPO


def test_the_dicom_node_never_imports_torch():
    code = "import sys, dicom_node.listener, delivery.pacs, worklist.app; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "False"
