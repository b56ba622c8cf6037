"""One exception for user mistakes: the CLI prints its message on one line and exits 2."""

import errno


class UserError(Exception):
    """Bad input from the user (a file, a name, a number): said in one line, no traceback."""


_ADVICE = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (the disk quota is full)",
    errno.EFBIG: "free some space or raise the file-size limit",
    errno.EACCES: "make the folder writable or choose another --out",
    errno.EPERM: "make the folder writable or choose another --out",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.ENOENT: "check the path",
}


def os_advice(e: OSError) -> str:
    """What to do about an OSError, in a few words."""
    return _ADVICE.get(e.errno or 0, "check the path and try again")


def os_error_line(e: OSError) -> str:
    """An OSError as one line: what failed, on which file, and what to do."""
    where = f" {e.filename}" if e.filename else ""
    return f"{e.strerror or e}:{where}; {os_advice(e)}"
