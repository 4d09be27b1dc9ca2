"""Run a command under the seccomp confinement a systemd unit declares, without systemd.

Tests cannot start the unit (no systemd as PID 1 here), but the settings most
likely to break native code (onnxruntime, numpy, curl_cffi) are seccomp filters,
which any process may install on itself: ``SystemCallFilter=`` with
``SystemCallErrorNumber=`` (the allow-list, expanded with ``systemd-analyze
syscall-filter`` exactly as systemd expands it), ``RestrictAddressFamilies=``
(an allow-list of ``socket()`` families) and ``MemoryDenyWriteExecute=``
(the rules systemd 252 loads: no writable-and-executable ``mmap``, no
``mprotect``/``pkey_mprotect`` adding execute, no executable ``shmat``).
Filters survive ``execve``, so the confined command sees what the service would.

Usage: python systemd_sandbox.py UNIT_FILE -- COMMAND [ARGS...]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_MASKED_EQ = 4, 5, 7
AF_MAX = 46  # linux/socket.h
PR_SET_NO_NEW_PRIVS = 38
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def libseccomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return lib


def unit_settings(unit_text: str, key: str) -> list[str]:
    """Every value of ``key=`` in the unit, in order (repeatable settings accumulate)."""
    prefix = key + "="
    return [line[len(prefix):].strip() for line in unit_text.splitlines() if line.startswith(prefix)]


def syscall_sets() -> dict[str, list[str]]:
    """systemd's named system-call groups, as this systemd defines them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    sets: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return sets


def expand(entries: list[str], sets: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for entry in entries:
        names |= expand(sets[entry], sets) if entry.startswith("@") else {entry}
    return names


def allowed_syscalls(unit_text: str, sets: dict[str, list[str]]) -> set[str]:
    """The allow-list the unit's ``SystemCallFilter=`` lines add up to: the first
    (non-``~``) line sets it, ``~`` lines take groups away."""
    allowed: set[str] = set()
    for value in unit_settings(unit_text, "SystemCallFilter"):
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), sets)
        else:
            allowed |= expand(value.split(), sets)
    return allowed


def confine(unit_text: str) -> None:
    """Install the unit's seccomp filters on this process (and everything it executes)."""
    lib = libseccomp()
    if lib is None:
        raise RuntimeError("libseccomp is not installed")
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")

    if unit_settings(unit_text, "MemoryDenyWriteExecute") == ["yes"]:
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        deny = scmp_act_errno(errno.EPERM)
        for name, arg, mask in [("mmap", 2, PROT_WRITE | PROT_EXEC), ("mprotect", 2, PROT_EXEC),
                                ("pkey_mprotect", 2, PROT_EXEC), ("shmat", 2, SHM_EXEC)]:
            cmp = (ArgCmp * 1)(ArgCmp(arg, SCMP_CMP_MASKED_EQ, mask, mask))
            _check(lib.seccomp_rule_add_array(ctx, deny, lib.seccomp_syscall_resolve_name(name.encode()), 1, cmp), name)
        _check(lib.seccomp_load(ctx), "seccomp_load")
        lib.seccomp_release(ctx)

    families = unit_settings(unit_text, "RestrictAddressFamilies")
    if families:
        # An allow-list: socket() with any other family fails with EAFNOSUPPORT, as under systemd.
        allowed_families = {int(getattr(socket, name)) for name in families[-1].split()}
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        refuse = scmp_act_errno(errno.EAFNOSUPPORT)
        nr = lib.seccomp_syscall_resolve_name(b"socket")
        for family in sorted(set(range(AF_MAX)) - allowed_families):
            cmp = (ArgCmp * 1)(ArgCmp(0, SCMP_CMP_EQ, family, 0))
            _check(lib.seccomp_rule_add_array(ctx, refuse, nr, 1, cmp), f"socket family {family}")
        cmp = (ArgCmp * 1)(ArgCmp(0, SCMP_CMP_GE, AF_MAX, 0))
        _check(lib.seccomp_rule_add_array(ctx, refuse, nr, 1, cmp), "socket families beyond AF_MAX")
        _check(lib.seccomp_load(ctx), "seccomp_load")
        lib.seccomp_release(ctx)

    if unit_settings(unit_text, "SystemCallFilter"):
        (errno_name,) = unit_settings(unit_text, "SystemCallErrorNumber") or ["EPERM"]
        ctx = lib.seccomp_init(scmp_act_errno(getattr(errno, errno_name)))
        for name in sorted(allowed_syscalls(unit_text, syscall_sets())):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr >= 0:  # names of other architectures resolve to negative pseudo numbers
                _check(lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None), name)
        _check(lib.seccomp_load(ctx), "seccomp_load")
        lib.seccomp_release(ctx)


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"libseccomp: {what}: {os.strerror(-rc)}")


if __name__ == "__main__":
    unit_file, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    confine(Path(unit_file).read_text(encoding="utf-8"))
    os.execvp(command[0], command)
