"""Internal HTTP between Tessera's services: the cluster signature (auth), the one signed client
(client), the one service skeleton (service/)."""
