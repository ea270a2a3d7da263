"""The Index over HTTP: the metadata service, its wire protocol and its client."""
