"""A job's settings: the config values it depends on, as a frozen dataclass the job also reads as a
mapping.

The plan (:mod:`aria.workflow.plan`) builds each job's :class:`Settings` from the validated config,
the rule passes them as the ``--params`` JSON object, and the command line checks that JSON against
the same fields (:meth:`Settings.from_dict`) before the job runs: one declaration for the plan, the
rules, the CLI and the tests. The job contract as a whole is in :mod:`aria.workflow.jobs.base`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields

__all__ = ["Settings", "UNSET"]


class _Unset:
    """The type of :data:`UNSET`."""

    def __repr__(self):
        return "UNSET"


#: The default of a setting the plan may leave out: such a setting is absent from the job's mapping
#: (``p.get(name, default)`` gives the default), and from the ``--params`` JSON.
UNSET = _Unset()


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Settings(Mapping):
    """A job's settings: a frozen, keyword-only dataclass that the job also reads as a mapping.

    Subclasses are dataclasses by declaration (``class LdsSettings(Settings): n_boot: int``). A
    field is a setting; one with the default :data:`UNSET` is optional. ``class X(Settings,
    open=True)`` also takes settings it does not declare (a registered method's own parameters) and
    keeps them in the mapping.

    The mapping (``p["k"]``, ``p.get``, ``**p``) and :meth:`to_dict` hold the given settings,
    :meth:`from_dict` checks a JSON object against the fields.
    """

    _open: typing.ClassVar[bool] = False
    _extra: typing.ClassVar[Mapping] = types.MappingProxyType({})

    def __init_subclass__(cls, *, open: bool = False, **kw):
        super().__init_subclass__(**kw)
        cls._open = open
        # eq=False: settings compare as mappings (Mapping.__eq__), a method's own parameters included
        dataclass(frozen=True, kw_only=True, eq=False)(cls)

    @classmethod
    def from_dict(cls, values: Mapping, *, job: str) -> Settings:
        """The settings of job ``job`` from a JSON object ``values``, each checked against its field's
        type (the JSON type: a ``list[int]`` must be a list, its items are not checked).

        Raises
        ------
        ValueError
            Naming the job and the settings: unknown (of a closed class), missing, or of the wrong type.
        """
        if isinstance(values, cls):
            return values
        hints = typing.get_type_hints(cls)
        declared = {f.name: f for f in fields(cls)}
        where = f"aria {job} --params"
        unknown = sorted(set(values) - set(declared))
        if unknown and not cls._open:
            raise ValueError(f"{where}: unknown setting(s) {unknown}; {cls.__name__} takes {sorted(declared)}")
        missing = [n for n, f in declared.items() if f.default is MISSING and n not in values]
        if missing:
            raise ValueError(f"{where}: missing setting(s) {missing} ({cls.__name__})")
        for name in set(values) & set(declared):
            if not _is_a(values[name], hints[name]):
                raise ValueError(f"{where}: setting {name!r} must be {hints[name]}, got {values[name]!r}")
        out = cls(**{n: values[n] for n in declared if n in values})
        if unknown:
            object.__setattr__(out, "_extra", {n: values[n] for n in unknown})
        return out

    def to_dict(self) -> dict:
        """The given settings (an :data:`UNSET` one left out) as a plain dict, e.g. for JSON."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not UNSET}
        return {**out, **self._extra}

    def __getitem__(self, name: str):
        value = getattr(self, name, UNSET) if name in self.__dataclass_fields__ else self._extra.get(name, UNSET)
        if value is UNSET:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _is_a(value, hint) -> bool:
    """Whether a JSON value fits a settings field's type (``float`` takes an ``int``, never a ``bool``)."""
    if hint is typing.Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    hint = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)
