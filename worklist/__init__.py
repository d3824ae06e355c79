"""The web app: the worklist page and its API (queues, studies, readings, labels, accounts, audit,
readiness, metrics). It reads and writes the system of record through ``triage.records`` only and does
no DICOM networking: what it shows of the PACS, the delivering process recorded."""
