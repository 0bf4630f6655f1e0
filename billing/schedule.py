"""Puts the default beat schedule (config.celery.BEAT_DEFAULTS) into the database."""

from django_celery_beat.models import CrontabSchedule, PeriodicTask


def beat_defaults_install(**_kwargs) -> None:
    """Create each missing periodic task; an existing one (perhaps edited in admin) is kept."""
    from config.celery import BEAT_DEFAULTS

    for name, entry in BEAT_DEFAULTS.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        cron = entry["schedule"]
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=cron._orig_minute, hour=cron._orig_hour, day_of_week=cron._orig_day_of_week,
            day_of_month=cron._orig_day_of_month, month_of_year=cron._orig_month_of_year, timezone="UTC")
        PeriodicTask.objects.create(name=name, task=entry["task"], crontab=crontab, description=entry["description"])
