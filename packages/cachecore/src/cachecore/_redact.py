"""A logging filter that keeps secret values and tokens out of botocore's DEBUG log.

At DEBUG, botocore logs whole requests and responses: the signed headers (with
``X-Amz-Security-Token``), the canonical request, and the body of every answer,
``SecretString`` and ``Value`` included. ``RedactingFilter`` lets through the DEBUG
records of the botocore loggers known to hold none of that, and replaces the text
of the others, and of any record anywhere whose text names a secret-bearing field,
with a note that it was withheld. The structured ``fields`` of a record (a mapping
that a JSON formatter writes out) are checked the same way. The CLI puts it on its
log handlers; code that turns on botocore's DEBUG log in-process can do the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

__all__ = ["RedactingFilter"]

#: botocore loggers whose DEBUG records carry no request or response content.
_QUIET_BOTOCORE = (
    "botocore.hooks",
    "botocore.loaders",
    "botocore.regions",
    "botocore.client",
    "botocore.credentials",
    "botocore.configprovider",
    "botocore.retries",
    "botocore.retryhandler",
    "botocore.utils",
    "botocore.httpsession",
    "botocore.endpoint_provider",
)

#: Text that marks a record as carrying a payload or a credential.
_TELLTALES = (
    "SecretString",
    "SecretBinary",
    "SecretValueList",
    '"Value"',
    "'Value'",
    "X-Amz-Security-Token",
    "x-amz-security-token",
    "Authorization",
    "authorization",
    "X-Aws-Parameters-Secrets-Token",
    "x-aws-parameters-secrets-token",
)


def _quiet(name: str) -> bool:
    return any(name == q or name.startswith(q + ".") for q in _QUIET_BOTOCORE)


class RedactingFilter(logging.Filter):
    """Withhold log records that may hold a secret value or a token.

    ``hide(text)`` adds a string (the HTTP token, say) that is replaced wherever it
    appears in a record's text.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hidden: list[str] = []

    def hide(self, text: str | None) -> None:
        """Replace ``text`` by ``(hidden)`` in every record from now on."""
        if text:
            self._hidden.append(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, with its text replaced where it may hold a secret."""
        chatty = record.name.startswith(("botocore", "boto3", "urllib3"))
        if chatty and record.levelno < logging.INFO and not _quiet(record.name):
            self._withhold(record)
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is withheld too
            self._withhold(record)
            return True
        fields = getattr(record, "fields", None)
        if not isinstance(fields, Mapping):
            fields = {}
        if record.exc_info and not record.exc_text:
            # The traceback is text too: render it now, so that it is checked
            # and replaced like the message (formatters use exc_text when set).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        extra = [record.exc_text or "", record.stack_info or ""]
        texts = [text, *(str(value) for value in fields.values()), *extra]
        if any(telltale in part for part in texts for telltale in _TELLTALES):
            self._withhold(record)
            return True
        if any(hidden in part for part in texts for hidden in self._hidden):
            record.msg, record.args = self._replace(text), None
            # A value that is not a plain scalar is written out as its text
            # (``str``), so it is replaced as text.
            record.fields = {
                key: value
                if value is None or isinstance(value, bool | int | float)
                else self._replace(str(value))
                for key, value in fields.items()
            }
            if record.exc_text:
                record.exc_text = self._replace(record.exc_text)
            if record.stack_info:
                record.stack_info = self._replace(record.stack_info)
        return True

    def _replace(self, text: str) -> str:
        for hidden in self._hidden:
            text = text.replace(hidden, "(hidden)")
        return text

    @staticmethod
    def _withhold(record: logging.LogRecord) -> None:
        record.msg = "(withheld: this record may hold a secret value or a token)"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.fields = {}
