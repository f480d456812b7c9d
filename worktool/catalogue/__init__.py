"""The reply personas and the template catalogue shipped with the package (personas.yaml, templates.yaml
beside this file), validated when loaded: a template using a variable it does not declare, or declaring
one the catalogue does not know, is an error here, never a message in a group.

Models only and their loading; choosing a persona and a template is operators/ (personas.py, replies.py),
copying them into PostgreSQL is infra/migrate.py (`sync_catalogue`).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PersonaCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
EmojiPolicy = Literal["none", "light", "rich"]
Shift = Literal["day", "night"]
# The reply-delay scenarios of operators/replies.py (docs/rules.md §5), which templates may narrow to.
SCENARIOS: tuple[str, ...] = (
    "urgent",
    "after_sales_notify",
    "day_shift_complex",
    "night_shift_complex",
    "day_shift_operation",
    "night_shift_operation",
)
# What gets an automatic text: the user types and the operator's harsh tone (replies), and the notice to
# staff about an after-sales need.
MESSAGE_KINDS: tuple[str, ...] = (
    "chat_daily",
    "chat_after_sales",
    "chat_complaint",
    "chat_cooperation",
    "chat_private_operation",
    "chat_complain_discuss",
    "chat_other",
    "operator_tone_hard",
    "after_sales_notify",
)
# {{name}}, spaces allowed inside the braces: the engine of operators/replies.py.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
MAX_TEMPLATE_CHARS = 2000


class CatalogueError(ValueError):
    """The shipped (or a given) catalogue is not usable; the message names the template and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Persona(_Strict):
    """A reply persona (人设): what the LLM is told, and the policy applied to every reply it sends."""

    code: PersonaCode
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role_type: Annotated[str, Field(min_length=1, max_length=32)]
    description: Annotated[str, Field(max_length=500)] = ""
    system_prompt: Annotated[str, Field(min_length=1, max_length=8000)]
    tone: Annotated[str, Field(min_length=1, max_length=200)]
    max_reply_chars: Annotated[int, Field(ge=10, le=2000)]
    emoji: EmojiPolicy
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7


class PersonaChange(_Strict):
    """Fields of a persona to change (the business YAML's `personas.overrides`, a console version);
    unset fields keep the value they change."""

    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    role_type: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    system_prompt: Annotated[str, Field(min_length=1, max_length=8000)] | None = None
    tone: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    max_reply_chars: Annotated[int, Field(ge=10, le=2000)] | None = None
    emoji: EmojiPolicy | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None

    def apply(self, code: str, base: Persona | None) -> Persona:
        """`base` with these fields changed; a new persona (no base) needs name, system_prompt and tone."""
        changes = self.model_dump(exclude_none=True)
        if base is not None:
            return Persona.model_validate({**base.model_dump(), **changes})
        defaults = {"role_type": "自定义", "max_reply_chars": 100, "emoji": "light"}
        return Persona.model_validate({"code": code, **defaults, **changes})


class Variable(_Strict):
    source: Literal["message", "clock", "setting"]
    description: str
    sample: str
    default: str | None = None  # a setting's value when the business configuration sets none

    @model_validator(mode="after")
    def _setting_has_default(self) -> Variable:
        if self.source == "setting" and self.default is None:
            raise ValueError("a setting variable needs a default")
        return self


class Category(_Strict):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    name: Annotated[str, Field(min_length=1, max_length=16)]


class MessageTemplate(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    category: str
    name: Annotated[str, Field(min_length=1, max_length=64)]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)]
    variables: list[str]
    personas: list[PersonaCode] = Field(default_factory=list)  # empty: any persona
    message_types: list[str] = Field(default_factory=list)  # empty: never chosen by the rules
    scenarios: list[str] = Field(default_factory=list)  # empty: any scenario
    shifts: list[Shift] = Field(default_factory=list)  # empty: either shift

    @property
    def parts(self) -> list[str]:
        """The text split at its placeholders: text, variable, text, ... (odd places are names)."""
        return PLACEHOLDER.split(self.text)

    def render(self, values: dict[str, str]) -> str:
        parts = self.parts
        for i in range(1, len(parts), 2):
            parts[i] = values[parts[i]]
        return "".join(parts)


def check_text(text: str, declared: set[str], known: set[str] | frozenset[str]) -> None:
    """Raise ValueError unless `text` uses exactly the declared variables, all known, and no stray braces."""
    parts = PLACEHOLDER.split(text)
    used = set(parts[1::2])
    unknown = sorted(declared - set(known))
    if unknown:
        raise ValueError(f"declares unknown variable(s) {', '.join(unknown)}")
    undeclared = sorted(used - declared)
    if undeclared:
        raise ValueError(f"uses undeclared variable(s) {', '.join('{{' + v + '}}' for v in undeclared)}")
    unused = sorted(declared - used)
    if unused:
        raise ValueError(f"declares variable(s) it does not use: {', '.join(unused)}")
    for literal in parts[0::2]:
        if "{{" in literal or "}}" in literal:
            raise ValueError("has a malformed placeholder (write {{name}} with a known name)")


class Catalogue(_Strict):
    categories: list[Category]
    variables: dict[str, Variable]
    templates: list[MessageTemplate]

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        codes = {c.code for c in self.categories} | {c.name for c in self.categories}
        seen: set[str] = set()
        for t in self.templates:
            where = f"template {t.id}"
            if t.id in seen:
                raise ValueError(f"{where}: listed twice")
            seen.add(t.id)
            if t.category not in codes:
                raise ValueError(f"{where}: unknown category {t.category!r}")
            try:
                check_text(t.text, set(t.variables), set(self.variables))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            bad = sorted(set(t.message_types) - set(MESSAGE_KINDS))
            if bad:
                raise ValueError(f"{where}: unknown message type(s) {', '.join(bad)}")
            bad = sorted(set(t.scenarios) - set(SCENARIOS))
            if bad:
                raise ValueError(f"{where}: unknown scenario(s) {', '.join(bad)}")
        return self

    def category_code(self, name_or_code: str) -> str | None:
        for c in self.categories:
            if name_or_code in (c.code, c.name):
                return c.code
        return None

    def category_name(self, name_or_code: str) -> str:
        for c in self.categories:
            if name_or_code in (c.code, c.name):
                return c.name
        return name_or_code

    def by_id(self, template_id: str) -> MessageTemplate | None:
        return next((t for t in self.templates if t.id == template_id), None)

    def samples(self) -> dict[str, str]:
        return {name: v.sample for name, v in self.variables.items()}

    def setting_defaults(self) -> dict[str, str]:
        return {name: v.default for name, v in self.variables.items() if v.default is not None}


def _errors(what: str, err: ValidationError) -> str:
    lines = [f"invalid {what}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def parse_catalogue(
    data: Any, personas: set[str] | None = None, what: str = "template catalogue"
) -> Catalogue:
    """Validate a catalogue (the YAML's data); with `personas`, every template's personas must be in it."""
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as e:
        raise CatalogueError(_errors(what, e)) from None
    if personas is not None:
        for t in catalogue.templates:
            unknown = sorted(set(t.personas) - personas)
            if unknown:
                raise CatalogueError(
                    f"invalid {what}: template {t.id}: unknown persona(s) {', '.join(unknown)}"
                )
    return catalogue


def parse_personas(data: Any, what: str = "persona presets") -> dict[str, Persona]:
    try:
        items = [Persona.model_validate(p) for p in (data or {}).get("personas", [])]
    except ValidationError as e:
        raise CatalogueError(_errors(what, e)) from None
    codes = [p.code for p in items]
    if len(set(codes)) != len(codes):
        raise CatalogueError(f"invalid {what}: a persona code is listed twice")
    return {p.code: p for p in items}


def _package_yaml(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@cache
def preset_personas() -> dict[str, Persona]:
    """The seven shipped personas by code (a cached dict: copy it before changing it)."""
    return parse_personas(_package_yaml("personas.yaml"))


@cache
def shipped_catalogue() -> Catalogue:
    return parse_catalogue(_package_yaml("templates.yaml"), set(preset_personas()))


def emoji_free(text: str) -> str:
    """`text` without emoji (each with the space after it)."""
    return _EMOJI.sub("", text).strip()


def apply_emoji_policy(text: str, policy: EmojiPolicy) -> str:
    """none: every emoji removed; light: the first kept, the others removed; rich: as written."""
    if policy == "rich":
        return text
    if policy == "none":
        return emoji_free(text)
    first = _EMOJI.search(text)
    if first is None:
        return text
    return (text[: first.end()] + _EMOJI.sub("", text[first.end() :])).strip()


# Pictographs, dingbats, symbols and their joiners/variation selectors (not CJK punctuation such as ～).
_EMOJI = re.compile(
    "(?:[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]"
    "[\ufe0f\u200d\U0001f3fb-\U0001f3ff]*)+ ?"
)
