"""The Index on one local LMDB environment (the embedded server, and a metadata service's own store)."""
