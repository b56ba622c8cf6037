"""One exception for user mistakes: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (a file, a name, a number): said in one line, no traceback."""
