"""Logging for entry points: one format with a correlation id (association or task) from a ContextVar,
and no patient data in any line.

Patient data reaches logs by two roads, both closed here for every process: pydicom's value
validators print the values they refuse (``Invalid value for VR DA: '19800101x'``: a birth date), so
validation of values read or written is off (triage checks what it relies on itself); and exception
messages from DICOM libraries quote values (``Unable to convert '1980-01-01' to 'DA'``), so a logged
traceback keeps its frames and exception types but withholds every message.
"""

from __future__ import annotations

import contextvars
import logging
import traceback
import warnings
from types import TracebackType

from pydicom import config as pydicom_config

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

WITHHELD = "(message withheld: it may quote patient data)"


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


class PatientSafeFormatter(logging.Formatter):
    """Formats tracebacks with their frames and exception types, never their messages."""

    def formatException(  # noqa: N802 (logging's name)
        self, ei: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
    ) -> str:
        _, error, _ = ei
        if error is None:
            return ""
        lines: list[str] = []
        seen: set[int] = set()
        chain: list[BaseException] = []
        while error is not None and id(error) not in seen:  # the cause first, as Python prints it
            seen.add(id(error))
            chain.append(error)
            error = error.__cause__ or error.__context__
        for position, link in enumerate(reversed(chain)):
            if position:
                lines.append("\nThe above exception led to the following one:\n\n")
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_list(traceback.extract_tb(link.__traceback__)))
            lines.append(f"{type(link).__module__}.{type(link).__qualname__}: {WITHHELD}\n")
        return "".join(lines).rstrip("\n")


def keep_patient_data_out() -> None:
    """Silence, at their source, the library messages that quote DICOM values."""
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    for library in ("pydicom", "highdicom"):
        warnings.filterwarnings("ignore", module=rf"{library}(\..*)?$")


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once, in an entry point; libraries only get loggers."""
    keep_patient_data_out()
    handler = logging.StreamHandler()
    handler.addFilter(_CorrelationFilter())
    handler.setFormatter(
        PatientSafeFormatter(
            "%(asctime)s %(levelname)s %(processName)s %(name)s [%(correlation_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pynetdicom", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
