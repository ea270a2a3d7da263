"""The admin API (JSON under /_tessera/admin/v1/) and the client `tessera admin` talks through."""
