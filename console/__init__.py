"""The tenant console: a management REST API and server-rendered pages over the metrics store."""
