"""Objects as erasure-coded data on a set of drives: the codec, the pipelines, placement, drive sets."""
