"""A labelled synthetic world of email/SMS sends, bot and human interactions."""
