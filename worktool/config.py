"""Business configuration: one YAML file named by WORKTOOL_CONFIG, validated with pydantic.

Everything a business person tunes lives here, with the RULES.md defaults built in, so an empty
file (or no file) works. Errors name the bad key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

RobotRole = Literal["monitor", "notify", "reply_day", "reply_night"]


class RobotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    robot_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    role: RobotRole


class BusinessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    robots: list[RobotConfig] = Field(default_factory=list)
    staff: list[str] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)
    assistants: list[str] = Field(default_factory=list)
    timezone: str = "Asia/Shanghai"

    @property
    def robot_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.robots)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the bad key."""


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"invalid business configuration {path}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: Path | str | None) -> BusinessConfig:
    """Load and validate the YAML file; None or an empty file gives the defaults."""
    if path is None:
        return BusinessConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read business configuration {p}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"business configuration {p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"business configuration {p} must be a mapping at the top level")
    try:
        return BusinessConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(p, e)) from e
