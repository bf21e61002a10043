"""The dashboard's settings: a TOML file at the XDG path, overridden by ``TUIBOX_*`` env vars.

``$XDG_CONFIG_HOME/tuibox/config.toml`` (default ``~/.config/tuibox/config.toml``), or the file
named by ``TUIBOX_CONFIG_FILE``.  Example::

    theme = "light"
    refresh_interval = 2.0
    columns = ["name", "status", "cpu", "memory"]
    [keys]
    stop = "x"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ALL_COLUMNS: tuple[str, ...] = (
    "name", "id", "image", "status", "cpu", "memory", "pids", "net", "block", "uptime", "ports",
)


class Keys(BaseModel):
    """One key (or a comma-separated list) per dashboard action."""

    start: str = "S"
    """Start the selected container(s)."""
    stop: str = "s"
    """Stop (asks first)."""
    restart: str = "r"
    """Restart."""
    freeze: str = "f,p"
    """Freeze or thaw (the cgroup freezer; Docker's pause)."""
    kill: str = "k"
    """Send SIGKILL (asks first)."""
    remove: str = "d"
    """Remove (asks first)."""
    exec: str = "e"
    """Open a shell in the container."""
    update: str = "u"
    """Edit memory / cpus / pids limits of a running container."""
    new: str = "n"
    """Run a new container."""
    images: str = "I"
    """The images screen."""
    filter: str = "slash"
    """Filter the table by a regex on name, image and status."""
    toggle_all: str = "a"
    """Show or hide stopped containers."""
    mark: str = "space"
    """Mark the row for a bulk action."""
    next_tab: str = "right_square_bracket"
    """Next detail tab."""
    previous_tab: str = "left_square_bracket"
    """Previous detail tab."""
    help: str = "question_mark"
    """Every key."""
    quit: str = "q"
    """Quit (containers keep running)."""


def config_path() -> Path:
    """Where the settings file is looked for."""
    explicit = os.environ.get("TUIBOX_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tuibox" / "config.toml"


class Settings(BaseSettings):
    """Everything a user can change about the dashboard."""

    model_config = SettingsConfigDict(
        env_prefix="tuibox_", env_nested_delimiter="__", env_ignore_empty=True, extra="ignore"
    )

    theme: Literal["dark", "light"] = "dark"
    """Colour theme: ``dark`` (textual-dark) or ``light`` (textual-light)."""
    refresh_interval: float = Field(default=1.0, ge=0.2, le=60.0)
    """Seconds between stats samples."""
    show_all: bool = True
    """Show stopped containers in the table at start."""
    columns: list[str] = Field(default_factory=lambda: list(ALL_COLUMNS))
    """Table columns, in order; any of ``ALL_COLUMNS``."""
    stop_timeout: int = 10
    """Seconds ``s`` and ``r`` wait before SIGKILL."""
    keys: Keys = Field(default_factory=Keys)
    """Key bindings; see ``Keys``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_path()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def visible_columns(self) -> list[str]:
        return [c for c in self.columns if c in ALL_COLUMNS] or list(ALL_COLUMNS)
