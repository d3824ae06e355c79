"""The delivery tests share the DICOM edge's small PKI (TLS to the PACS and to the audit collector)."""

from tests.dicom_node.conftest import pki  # noqa: F401 - a fixture
