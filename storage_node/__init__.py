"""Fragments on drives: the Drive seam, fragment format, local drive, scrubber, the node's service and its client."""
