"""The web console: its HTTP app, sessions and static assets."""
