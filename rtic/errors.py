"""The one error type for mistakes a user can cause (bad file, unknown sector, missing model).

The CLI turns it into a single line on stderr and exit status 2; anything else is a bug
and keeps its traceback.
"""


class RticError(Exception):
    """A problem with the user's input or set-up, explained in one line."""
