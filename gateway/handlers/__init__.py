"""The S3 operations, one module per resource: buckets, objects, multipart uploads, listings."""
