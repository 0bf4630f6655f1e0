"""LOG_FORMAT=json: one JSON object per line, for a log pipeline to index without parsing.

Keys: `time` (UTC, ISO 8601), `level`, `logger`, `message`, `process`, then `exc_info`
when there is a traceback and any field passed with `extra=`.
"""

import json
import logging
from datetime import UTC, datetime

_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS:
                entry.setdefault(key, value)
        return json.dumps(entry, default=str, ensure_ascii=False)
