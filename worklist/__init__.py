"""The system of record: studies, versions, instances, state history, outbox and audit."""
