"""Pieces every billing admin module uses (shared with the other apps' admin)."""

from config.admin_base import ReadOnlyAdmin, ReadOnlyPermissions, actor_of, pretty_json

__all__ = ["ReadOnlyAdmin", "ReadOnlyPermissions", "actor_of", "pretty_json"]
