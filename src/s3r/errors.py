"""Errors that users see.

Every problem with user input is raised as :class:`S3RInputError` carrying one line that names the file,
row, column or sample and says how to fix it. The command-line interface prints that line and exits non-zero
instead of showing a traceback.
"""


class S3RInputError(ValueError):
    """Bad user input; the message is a single actionable line."""
