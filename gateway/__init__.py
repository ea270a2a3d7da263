"""The S3 gateway: the wire protocol, objects erasure-coded over the two seams, their care, the admin API."""
