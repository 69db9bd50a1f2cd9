"""The ground every stage stands on: settings, user errors, paths, redaction and API tokens.

Imports nothing of ours.
"""
