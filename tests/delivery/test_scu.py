"""What a failed C-STORE leaves in deliveries.last_error (shown on the page): the kind of failure,
never the exception's message, which may quote a patient's value."""

from types import SimpleNamespace

from delivery.scu import Outgoing, _store_one
from testkit import synthetic

CANARY = "Canary^Patient^1961"


def test_a_failed_store_records_the_kind_of_error_and_no_message(tmp_path):
    ds = synthetic.dx()
    [path] = synthetic.write([ds], tmp_path)

    def refuse(_path):
        raise ValueError(f"cannot encode PatientName {CANARY}")

    context = SimpleNamespace(
        abstract_syntax=ds.SOPClassUID, transfer_syntax=[ds.file_meta.TransferSyntaxUID]
    )
    assoc = SimpleNamespace(accepted_contexts=[context], send_c_store=refuse)
    headers = {path: (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))}
    result = _store_one(assoc, Outgoing(path), headers)
    assert result.detail == "C-STORE failed: ValueError"
    assert CANARY not in result.detail
