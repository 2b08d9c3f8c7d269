"""What a command check or a restart strategy may run, and with which environment.

Executables are matched by their resolved absolute path, never by name alone: an allowlist entry
``/usr/bin/python3`` (or the bare ``python3``, resolved once on the guard's own PATH) admits exactly
that file however it is spelled (symlinks, merged /usr), and nothing called ``python3`` elsewhere.

Environment variables that make a loader or an interpreter run code of the caller's choosing are
refused, whatever the executable: ``BASH_ENV=/tmp/x`` turns any allowlisted bash script into a
command runner, ``LD_PRELOAD`` any allowlisted binary. ``PATH`` is refused too (it would change what
a bare name resolves to); the child always gets the guard's own PATH. Refused at save time (a 422
naming the field) and again right before running (rows written before this rule, config files).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable

# Exact names. Shells: startup files and hooks run before the script; interpreters: option and
# module-path variables that load code; others: the same for Java, Lua, Tcl, Git, glibc.
REFUSED_ENV_NAMES = frozenset(
    {
        "PATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "ZDOTDIR",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PERLLIB",
        "PERLIO",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "LUA_INIT",
        "LUA_PATH",
        "LUA_CPATH",
        "TCLLIBPATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "MALLOC_CHECK_",
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "BROWSER",
    }
)
# Prefixes: the dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...; DYLD_* on macOS), Python
# (PYTHONSTARTUP, PYTHONPATH...), Perl (PERL5OPT, PERL5LIB, PERL5DB), Ruby, Node, exported bash
# functions (BASH_FUNC_name%%), GLIBC_TUNABLES.
REFUSED_ENV_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL5",
    "RUBY",
    "NODE_",
    "NPM_CONFIG_",
    "BASH_FUNC_",
    "GLIBC_",
    "GEM_",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: "$" would let a trailing newline in


def env_name_refusal(name: str) -> str | None:
    """Why ``name`` may not be set for a command, or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return f"{name!r} is not a valid variable name (letters, digits and _ only)"
    upper = name.upper()
    if upper in REFUSED_ENV_NAMES or upper.startswith(REFUSED_ENV_PREFIXES):
        return f"{name} is refused: it can make a loader or an interpreter run other code"
    return None


def env_refusals(names: Iterable[str]) -> list[tuple[str, str]]:
    """(name, reason) for every refused name."""
    return [(name, reason) for name in names if (reason := env_name_refusal(name))]


def guard_path() -> str:
    return os.environ.get("PATH", os.defpath)


def resolve_executable(argv0: str, path: str | None = None) -> str | None:
    """The real absolute path ``argv0`` runs (bare names looked up on ``path``), or None."""
    if not argv0:
        return None
    found = argv0 if os.sep in argv0 else shutil.which(argv0, path=path or guard_path())
    if not found:
        return None
    return os.path.realpath(os.path.abspath(found))


def allowed_paths(allowlist: Iterable[str], path: str | None = None) -> set[str]:
    """Allowlist entries as real absolute paths (bare names resolved on the guard's PATH)."""
    out = set()
    for entry in allowlist:
        if os.sep in entry:
            out.add(os.path.realpath(entry))
        elif resolved := shutil.which(entry, path=path or guard_path()):
            out.add(os.path.realpath(resolved))
    return out


def executable_refusal(
    argv0: str, allowlist: Iterable[str], setting: str, path: str | None = None
) -> str | None:
    """Why ``argv0`` may not run under ``allowlist`` (empty: anything), or None."""
    entries = list(allowlist)
    if not entries:
        return None
    real = resolve_executable(argv0, path)
    if real is not None and real in allowed_paths(entries, path):
        return None
    where = f" (resolves to {real})" if real and real != argv0 else ""
    return f"executable {argv0!r}{where} is not in {setting}"
