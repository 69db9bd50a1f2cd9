"""Offline enrichment from vendored public data: IP to ASN, network flags, User-Agent parsing."""
