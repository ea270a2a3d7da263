"""Who is who: root credentials and the users kept in the index."""
