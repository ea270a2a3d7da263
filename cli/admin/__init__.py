"""`tessera admin`: operate a running cluster through a gateway's admin API (docs/admin-api.md)."""

# group.py holds the click group and what every command shares (credentials and endpoint come from where aws-cli
# takes them); view.py, jobs.py, nodes.py, users.py and quotas.py the commands by topic; render.py and
# formatting.py turn documents into text; progress.py follows a job. Everything that talks to the gateway goes through
# gateway.admin.client.

from cli.admin import jobs, nodes, quotas, users, view  # noqa: F401 -- importing them adds their commands to the group
from cli.admin.group import admin

__all__ = ["admin"]
