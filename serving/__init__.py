"""The online scoring API (BentoML) with shared window state."""
