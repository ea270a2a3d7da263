"""One metadata replica: versioned records on LMDB, its protocol, client and service, anti-entropy."""
