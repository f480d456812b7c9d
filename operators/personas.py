"""Which persona a robot answers with (docs/rules.md §5), the seeds' selectPersona. Pure.

robot.persona set             -> that persona
robot.group in by_group       -> its persona (a group named like a persona's code: that persona)
robot.role in by_role         -> its persona (default: notify -> service)
otherwise                     -> personas.default (assistant)
"""

from __future__ import annotations

from worktool.config import PersonaConfig, RobotConfig


def select_persona(robot: RobotConfig | None, personas: PersonaConfig) -> str:
    """The persona code of `robot` (None: a robot the configuration does not list)."""
    if robot is None:
        return personas.default
    if robot.persona:
        return robot.persona
    if robot.group:
        code = personas.by_group.get(robot.group)
        if code is None and robot.group in personas.definitions:
            code = robot.group
        if code is not None:
            return code
    return personas.by_role.get(robot.role, personas.default)
