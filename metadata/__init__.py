"""The index: the Index seam and its records at the root; its implementations and their services in rooms."""
