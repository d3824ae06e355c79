"""Notifications of the Recall queue: each discrepancy (``triage.records.discrepancies``) goes to the
people the site names, by webhook (a JSON POST, e.g. to the team's chat) and by e-mail through the
site's SMTP server, from the leading process, tried again (doubling, at most hourly) until one of
them takes it. No patient data leaves this way: the study by its number and what kind of
discrepancy it is; the page shows the rest to those signed in.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from triage.periodic import PeriodicThread
from triage.records import discrepancies
from triage.records.db import Database
from triage.records.status_tables import Discrepancy
from triage.settings import Settings

logger = logging.getLogger(__name__)


def payload(row: Discrepancy) -> dict[str, object]:
    return {
        "event": "triage.discrepancy",
        "id": row.id,
        "kind": row.kind,
        "study_id": row.study_id,
        "found_at": row.found_at.isoformat(),
        "detail": row.detail,
        "action": "contact the patient; record it on triage's page (Recall queue)",
    }


def _webhook(url: str, body: dict[str, object], timeout: float) -> str:
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL from the settings
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return "" if 200 <= answer.status < 300 else f"webhook answered {answer.status}"
    except urllib.error.HTTPError as error:
        return f"webhook answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"webhook not reachable: {type(error).__name__}"


def _email(settings: Settings, body: dict[str, object]) -> str:
    assert settings.notify_smtp is not None
    host, _, port = settings.notify_smtp.rpartition(":")
    message = EmailMessage()
    message["From"] = settings.notify_email_from
    message["To"] = ", ".join(settings.notify_email_to)
    message["Subject"] = f"triage: a patient to recall ({body['kind']}, study {body['study_id']})"
    message.set_content("\n".join(f"{key}: {value}" for key, value in body.items()))
    try:
        with smtplib.SMTP(host, int(port), timeout=settings.network_timeout_seconds) as smtp:
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        return f"e-mail not sent: {type(error).__name__}"
    return ""


def notify_due(settings: Settings, database: Database) -> int:
    """Send every due notification; returns how many reached someone."""
    reached = 0
    with database.session() as session:
        for row in discrepancies.due(session, database.now()):
            body = payload(row)
            errors = []
            if settings.notify_webhook_url:
                errors.append(_webhook(settings.notify_webhook_url, body, settings.network_timeout_seconds))
            if settings.notify_smtp and settings.notify_email_to:
                errors.append(_email(settings, body))
            delivered = any(not error for error in errors)
            discrepancies.notified(session, row, "" if delivered else "; ".join(errors), database.now())
            reached += delivered
            if not delivered:
                logger.warning("discrepancy %d not notified yet: %s", row.id, "; ".join(errors))
    return reached


def start(settings: Settings, database: Database, leading: Callable[[], bool]) -> list[PeriodicThread]:
    """Notify in a background thread while ``leading()`` (none when no channel is configured)."""
    if not settings.notify_webhook_url and not (settings.notify_smtp and settings.notify_email_to):
        return []
    thread = PeriodicThread(
        "notify",
        lambda: notify_due(settings, database) if leading() else 0,
        settings.monitor_interval_seconds * 4,
    )
    thread.start()
    return [thread]
