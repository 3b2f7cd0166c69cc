"""Per-resource logic. Services take and return protocol models; tables stay on this side."""
