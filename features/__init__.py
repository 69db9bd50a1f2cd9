"""Per-event features: enrichment (IP, ASN, networks, User-Agent) and causal window features."""
