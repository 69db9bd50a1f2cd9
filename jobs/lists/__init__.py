"""Tenant allow and block lists: entries, their storage and audit, and the one override rule
that the batch recompute and the online API both apply."""
