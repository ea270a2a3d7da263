"""What S3 requests and answers look like: signatures, body framing, XML, checksums, errors (no storage)."""
