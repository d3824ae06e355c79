"""The system of record every process shares: the database (``db``, ``tables``, migrations), the only
writer of study state, outbox and audit (``store``), reads (``queries``), results and deliveries
(``results``), readings, accounts, the verdict that acts (``verdicts``), stored files (``storage``) and
the broker outbox (``outbox``)."""
