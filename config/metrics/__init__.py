"""Prometheus metrics (docs/operations.md): what each process counts (`counters`), facts
read from Postgres when scraped (`facts`), and how each process serves them
(`exposition`, `views`, `celery_hooks`, `config/gunicorn.py`)."""
