"""`worktool templates list|test`: the reply template catalogue (worktool/catalogue/templates.yaml).

`list` prints the templates, filtered by category (its code or Chinese name) and by persona (templates
for any persona included); `test ID` renders one with the catalogue's sample values, the business
configuration's `replies.variables` over them, and `--var name=value` over those, and with `--persona`
shows it after that persona's emoji policy and length limit, as a reply would be sent.
Both read the package data and WORKTOOL_CONFIG only (no database).

Exit codes: 0 done; 1 no template with that id; 2 bad usage (an unknown category, persona or variable, a
malformed --var, an unreadable business configuration).
"""

from __future__ import annotations

import json

from worktool.catalogue import MessageTemplate, apply_emoji_policy, shipped_catalogue
from worktool.config import BusinessConfig, ConfigError, load_config
from worktool.settings import Settings


class UsageError(Exception):
    """Exit code 2, with this message."""


def _config(settings: Settings | None) -> BusinessConfig:
    settings = settings or Settings()
    try:
        return load_config(settings.config_path)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def select(config: BusinessConfig, category: str | None, persona: str | None) -> list[MessageTemplate]:
    catalogue = shipped_catalogue()
    code = None
    if category is not None:
        code = catalogue.category_code(category)
        if code is None:
            known = ", ".join(f"{c.code}({c.name})" for c in catalogue.categories)
            raise UsageError(f"unknown category {category!r}; known: {known}")
    if persona is not None and persona not in config.personas.definitions:
        raise UsageError(f"unknown persona {persona!r}; known: {', '.join(config.personas.definitions)}")
    return [
        t
        for t in catalogue.templates
        if (code is None or catalogue.category_code(t.category) == code)
        and (persona is None or not t.personas or persona in t.personas)
    ]


def cli_list(
    category: str | None, persona: str | None, as_json: bool = False, settings: Settings | None = None
) -> int:
    from rich.console import Console
    from rich.table import Table

    out, err = Console(), Console(stderr=True)
    try:
        templates = select(_config(settings), category, persona)
    except UsageError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    catalogue = shipped_catalogue()
    if as_json:
        for t in templates:
            print(
                json.dumps(
                    {**t.model_dump(), "category_name": catalogue.category_name(t.category)},
                    ensure_ascii=False,
                )
            )
        return 0
    table = Table(title=f"{len(templates)} templates", show_lines=False)
    table.add_column("id", no_wrap=True)
    for column in ("category", "name", "personas", "used for", "variables"):
        table.add_column(column)
    for t in templates:
        used = ", ".join(t.message_types + t.scenarios + list(t.shifts)) or "-"
        table.add_row(t.id, catalogue.category_name(t.category), t.name, ", ".join(t.personas) or "any", used,
                      ", ".join(t.variables) or "-")  # fmt: skip
    out.print(table)
    return 0


def render(
    config: BusinessConfig, template_id: str, assignments: list[str], persona: str | None = None
) -> tuple[MessageTemplate, str] | None:
    catalogue = shipped_catalogue()
    template = catalogue.by_id(template_id)
    if template is None:
        return None
    given: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--var {item!r}: write name=value")
        if name.strip() not in template.variables:
            declared = ", ".join(template.variables) or "none"
            raise UsageError(
                f"--var {name.strip()}: {template.id} has no such variable (declared: {declared})"
            )
        given[name.strip()] = value
    r = config.replies
    values = {**catalogue.samples(), **r.variables, "day_starts": r.day_starts, "night_starts": r.night_starts,
              **given}  # fmt: skip
    text = template.render(values)
    if persona is not None:
        p = config.personas.definitions.get(persona)
        if p is None:
            raise UsageError(f"unknown persona {persona!r}; known: {', '.join(config.personas.definitions)}")
        text = apply_emoji_policy(text, p.emoji)
        if len(text) > p.max_reply_chars:
            text = text[: p.max_reply_chars - 1] + "…"
    return template, text


def cli_test(
    template_id: str, assignments: list[str], persona: str | None = None, settings: Settings | None = None
) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    try:
        found = render(_config(settings), template_id, assignments, persona)
    except UsageError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    if found is None:
        err.print(f"[red]no template {template_id}[/red] (worktool templates list)")
        return 1
    template, text = found
    catalogue = shipped_catalogue()
    err.print(f"[dim]{template.id} · {catalogue.category_name(template.category)} · {template.name}[/dim]")
    print(text)  # as is: no wrapping, no markup
    return 0
