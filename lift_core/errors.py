class LiftError(Exception):
    """A problem with the user's input or setup.

    The message is shown as it is, in the CLI and in the web app, so it must say
    what went wrong and what to do about it. Anything that is not a LiftError is a
    bug in LIFT Studio.
    """


# "Killed" is what the kernel's OOM killer leaves behind; -9 / 137 is its exit status.
OUT_OF_MEMORY_SIGNS = ("out of memory", "killed")
OUT_OF_MEMORY_EXIT_CODES = (-9, 137)
OUT_OF_MEMORY_HINT = ("This looks like the machine ran out of memory: try a smaller batch size, 4bit quantization, "
                      "or a smaller model.")


def looks_out_of_memory(text: str, exit_code: int | None = None) -> bool:
    return any(sign in text.lower() for sign in OUT_OF_MEMORY_SIGNS) or exit_code in OUT_OF_MEMORY_EXIT_CODES
