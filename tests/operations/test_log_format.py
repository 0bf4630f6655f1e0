"""LOG_FORMAT=json: one JSON object per line."""

import json
import logging
import sys

from config.log_format import JsonFormatter


def record(**kwargs) -> logging.LogRecord:
    logger = logging.getLogger("metering.consumer")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "lag=%d", (42,), None, **kwargs)


def test_a_line_is_json_with_the_message_formatted():
    line = JsonFormatter().format(record(extra={"partition": 2, "level": "not overridden"}))

    entry = json.loads(line)
    assert "\n" not in line
    assert (entry["level"], entry["logger"], entry["message"], entry["partition"]) == (
        "WARNING", "metering.consumer", "lag=42", 2)
    assert entry["time"].endswith("+00:00") and isinstance(entry["process"], int)


def test_a_traceback_is_kept_in_one_field():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    logger = logging.getLogger("x")

    line = JsonFormatter().format(logger.makeRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info))

    entry = json.loads(line)
    assert entry["exc_info"].startswith("Traceback") and "ValueError: boom" in entry["exc_info"]
