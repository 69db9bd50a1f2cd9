"""User-facing errors: the CLI prints them as one line on stderr and exits non-zero."""


class BotfilterError(Exception):
    """A problem the user can fix (bad file, missing column, no champion model...)."""
