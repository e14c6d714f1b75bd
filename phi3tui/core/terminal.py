"""Terminal niceties that work over SSH: the window title (showing the live run) and desktop
notifications (OSC 9 or OSC 777) for runs that finish or fail.

Plain strings only (no Textual): the app writes what this module returns; what to say comes from
core.runs.watcher.
"""

from __future__ import annotations

import os

ESC, BEL = "\x1b", "\x07"
# XTWINOPS: push the terminal's title on start, pop it on exit, so the user's title comes back.
TITLE_PUSH = f"{ESC}[22;0t"
TITLE_POP = f"{ESC}[23;0t"


def _clean(text: str) -> str:
    # Control characters inside an OSC string would end it early or be run by the terminal.
    return "".join(ch if ch.isprintable() else " " for ch in text).replace(";", ",") if text else ""


def title_sequence(title: str) -> str:
    """OSC 2: set the window (and tab) title."""
    return f"{ESC}]2;{_clean(title)}{BEL}"


def notification_kind(setting: str = "auto", environ: dict | None = None) -> str | None:
    """Which escape to use for desktop notifications: 'osc9', 'osc777' or None (off).

    OSC 9 is understood by iTerm2, Ghostty, WezTerm and kitty; OSC 777 by
    VTE-based terminals (GNOME Terminal, Tilix), foot and urxvt. Terminals ignore ones they do not know.
    """
    if setting == "off":
        return None
    if setting in ("osc9", "osc777"):
        return setting
    env = os.environ if environ is None else environ
    if env.get("TERM_PROGRAM") == "textual":  # `phi3tui serve`: a browser page, not a terminal
        return None
    term = env.get("TERM", "")
    if env.get("VTE_VERSION") or term.startswith(("foot", "rxvt")):
        return "osc777"
    return "osc9"


def notification_sequence(title: str, body: str, kind: str, environ: dict | None = None) -> str:
    """The escape for one desktop notification; wrapped for tmux, which swallows OSC 9/777 otherwise
    (it needs `set -g allow-passthrough on`)."""
    if kind == "osc777":
        seq = f"{ESC}]777;notify;{_clean(title)};{_clean(body)}{BEL}"
    else:
        seq = f"{ESC}]9;{_clean(title)}: {_clean(body)}{BEL}"
    env = os.environ if environ is None else environ
    if env.get("TMUX"):
        seq = f"{ESC}Ptmux;{seq.replace(ESC, ESC + ESC)}{ESC}\\"
    return seq


# -- the clipboard --------------------------------------------------------------------------
OSC52_NOTE = "sent to the terminal clipboard (OSC 52; Terminal.app ignores it, iTerm2 needs it allowed)"
PBCOPY_NOTE = "copied to the Mac clipboard (pbcopy)"


def local_clipboard_program(platform: str | None = None, environ: dict | None = None) -> str | None:
    """pbcopy's path when the app runs on the Mac whose screen you see (macOS, not over SSH, pbcopy on
    PATH), else None: then the copy goes to the terminal as OSC 52, which reaches the Mac over SSH too."""
    import shutil
    import sys

    env = os.environ if environ is None else environ
    if (platform or sys.platform) != "darwin" or env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return None
    return shutil.which("pbcopy", path=env.get("PATH"))


def copy_with_program(program: str, text: str) -> str | None:
    """Give `text` to a clipboard program on its stdin. None when it worked, else why not."""
    import subprocess

    try:
        done = subprocess.run([program], input=text.encode("utf-8"), capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{program} failed: {exc}"
    if done.returncode != 0:
        return f"{program} failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()}"
    return None
