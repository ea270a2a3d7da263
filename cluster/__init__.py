"""Internal HTTP between Tessera's services: the cluster signature, the one signed client, the service skeleton."""
