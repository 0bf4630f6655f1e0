"""Pieces every app's admin uses."""

import json

from django.contrib import admin
from django.utils.html import format_html


def actor_of(request) -> str:
    """Who the services record as having acted: the staff user."""
    return f"user:{request.user.username}"


def pretty_json(value) -> str:
    if value is None:
        return "—"
    return format_html('<pre class="pretty-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True,
                                                                       ensure_ascii=False))


class ReadOnlyPermissions:
    """Facts and history: viewable by whoever may view them, never added, changed or
    deleted in admin, superusers included (Postgres refuses most of it anyway)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyPermissions, admin.ModelAdmin):
    show_full_result_count = False
