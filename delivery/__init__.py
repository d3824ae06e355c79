"""Outbound results: deliveries to the PACS (C-STORE), retried until acknowledged.

Run in the listener's process, beside it (``triage listener``).
"""
