"""The one exception type for mistakes a user can fix.

The CLI prints an `FptError` as a single line and exits with code 2; anything
else is a bug in fpt and keeps its traceback.
"""


class FptError(Exception):
    """A user error: bad flag, missing file, shape that does not fit, NaN...

    The message names the problem and the fix.
    """
