"""The one exception type that turns into a one-line message and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: a flag, a config value or a data file.

    The message must say what is wrong and how to fix it, in one line.
    """
