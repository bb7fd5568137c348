"""The base of every error the command line reports as one line and exit status 2."""


class UserError(Exception):
    """Bad input or an unreachable service: something the user can fix."""
