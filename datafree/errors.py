"""The one exception type for user errors.

The CLI turns a :class:`DatafreeError` into a one-line message and a non-zero exit code, so
anything the user can fix (a wrong path, a mismatched checkpoint, missing data) raises it with
a message that says what to do.
"""


class DatafreeError(Exception):
    """A user-facing error: the message is shown as is, without a traceback."""
