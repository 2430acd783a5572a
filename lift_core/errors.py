class LiftError(Exception):
    """A problem with the user's input or setup.

    The message is shown as it is, in the CLI and in the web app, so it must say
    what went wrong and what to do about it. Anything that is not a LiftError is a
    bug in LIFT Studio.
    """
