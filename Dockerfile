# One image for every tokenledger process: web, consumer, Celery worker and beat.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml ./
COPY config ./config
COPY metering ./metering
COPY billing ./billing
COPY infra_inventory ./infra_inventory
COPY scripts ./scripts
COPY manage.py ./
RUN pip install --no-cache-dir . && python manage.py collectstatic --noinput
USER nobody
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi", "-w", "4", "-b", "0.0.0.0:8000"]
