"""Where phi3tui keeps the user's files: the config folder (settings.yaml, themes/) and the cache folder.

PHI3TUI_CONFIG_DIR and PHI3TUI_CACHE_DIR move them (tests use them; so can people with several setups). Its own
module, below settings.py: what reads files at start-up (core/kept_yaml.py) finds the cache here without settings.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "phi3tui"
CONFIG_DIR_ENV = "PHI3TUI_CONFIG_DIR"
CACHE_DIR_ENV = "PHI3TUI_CACHE_DIR"


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))
