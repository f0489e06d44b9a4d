"""Frozen dataclasses and string/int enums, at the import cost of builtins.

Web mode validates every setting before its exec, and its whole start has a
budget of 1.5x a bare interpreter start (docs/performance.md). `dataclasses`
imports `inspect` and costs that interpreter start again (+14 ms here);
`enum` alone costs +4 ms. So the planning modules, which web mode runs,
take their `dataclass`, `field`, `replace`, `asdict`, `StrEnum` and `IntEnum`
from here.

The type checker sees the standard library's own (mypy takes TYPE_CHECKING as
true), so every record is checked as a frozen dataclass and every enum as an
enum. At run time the subset this package uses is provided below: keyword and
positional construction with defaults and `field(default_factory=...)`,
immutability, equality, hashing, `repr`, `replace`, `asdict`; enum members
that are `str` / `int` instances with `.name` and `.value`, lookup by value,
iteration in definition order. tests/test_records.py holds both side by side.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import FrozenInstanceError, asdict, dataclass, field, fields, replace
    from enum import IntEnum, StrEnum
else:
    _MISSING = object()

    class FrozenInstanceError(AttributeError):
        pass

    class _Field:
        __slots__ = ("default", "default_factory", "name", "repr")

        def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True):  # noqa: A002
            self.default = default
            self.default_factory = default_factory
            self.repr = repr
            self.name = ""

    def field(*, default=_MISSING, default_factory=_MISSING, repr=True):  # noqa: A002
        return _Field(default, default_factory, repr)

    def _init(self, *args, **kwargs):
        specs = type(self).__record_fields__
        if len(args) > len(specs):
            raise TypeError(f"{type(self).__name__}() takes {len(specs)} arguments")
        for spec, value in zip(specs, args, strict=False):
            if spec.name in kwargs:
                raise TypeError(f"{type(self).__name__}() got two values for {spec.name!r}")
            kwargs[spec.name] = value
        for spec in specs:
            if spec.name in kwargs:
                value = kwargs.pop(spec.name)
            elif spec.default is not _MISSING:
                value = spec.default
            elif spec.default_factory is not _MISSING:
                value = spec.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing argument {spec.name!r}")
            object.__setattr__(self, spec.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected {', '.join(kwargs)}")

    def _values(self):
        return tuple(getattr(self, spec.name) for spec in type(self).__record_fields__)

    def _eq(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return _values(self) == _values(other)

    def _hash(self):
        return hash(_values(self))

    def _repr(self):
        shown = ", ".join(
            f"{spec.name}={getattr(self, spec.name)!r}"
            for spec in type(self).__record_fields__
            if spec.repr
        )
        return f"{type(self).__qualname__}({shown})"

    def _frozen(self, name, _value=None):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def dataclass(cls=None, /, *, frozen=False, repr=True):  # noqa: A002
        def wrap(cls):
            if not frozen:
                raise TypeError("records are frozen: use @dataclass(frozen=True)")
            specs = []
            for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063 - no inspect here
                value = cls.__dict__.get(name, _MISSING)
                spec = value if isinstance(value, _Field) else _Field(default=value)
                spec.name = name
                if isinstance(value, _Field):
                    if value.default is _MISSING:
                        delattr(cls, name)
                    else:
                        setattr(cls, name, value.default)
                specs.append(spec)
            cls.__record_fields__ = tuple(specs)
            methods = {"__init__": _init, "__eq__": _eq, "__hash__": _hash}
            if repr:
                methods["__repr__"] = _repr
            for name, method in methods.items():
                if name not in cls.__dict__ or name == "__hash__":
                    setattr(cls, name, method)
            cls.__setattr__ = _frozen
            cls.__delattr__ = _frozen
            return cls

        return wrap if cls is None else wrap(cls)

    def fields(obj):
        return obj.__record_fields__

    def replace(obj, /, **changes):
        values = {spec.name: getattr(obj, spec.name) for spec in obj.__record_fields__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(obj).__name__} has no field {', '.join(sorted(unknown))}")
        values.update(changes)
        return type(obj)(**values)

    def _plain(value):
        if hasattr(type(value), "__record_fields__"):
            return {
                spec.name: _plain(getattr(value, spec.name)) for spec in value.__record_fields__
            }
        if isinstance(value, list | tuple):
            return type(value)(_plain(item) for item in value)
        if isinstance(value, dict):
            return {_plain(key): _plain(item) for key, item in value.items()}
        return value

    def asdict(obj):
        return _plain(obj)

    class _EnumType(type):
        def __new__(mcs, name, bases, namespace):
            data_type = next((b for b in bases if b in (str, int)), None)
            if data_type is None:
                data_type = next(b.__data_type__ for b in bases if hasattr(b, "__data_type__"))
            members = {
                key: value
                for key, value in namespace.items()
                if not key.startswith("_") and isinstance(value, data_type)
            }
            for key in members:
                del namespace[key]
            cls = super().__new__(mcs, name, bases, namespace)
            cls.__data_type__ = data_type
            cls.__members__ = {}
            cls.__by_value__ = {}
            for key, value in members.items():
                member = data_type.__new__(cls, value)
                member._name_ = key
                member._value_ = data_type(value)
                type.__setattr__(cls, key, member)
                cls.__members__[key] = member
                cls.__by_value__.setdefault(member._value_, member)
            return cls

        def __call__(cls, value):
            if type(value) is cls:
                return value
            try:
                return cls.__by_value__[value]
            except (KeyError, TypeError):
                raise ValueError(f"{value!r} is not a valid {cls.__name__}") from None

        def __iter__(cls):
            return iter(cls.__members__.values())

        def __len__(cls):
            return len(cls.__members__)

        def __contains__(cls, value):
            return value in cls.__by_value__

        def __getitem__(cls, name):
            return cls.__members__[name]

        def __setattr__(cls, name, value):
            if name in cls.__dict__.get("__members__", {}):
                raise AttributeError(f"cannot reassign member {name!r}")
            super().__setattr__(name, value)

    class _Member:
        __slots__ = ()

        @property
        def name(self):
            return self._name_

        @property
        def value(self):
            return self._value_

        def __repr__(self):
            return f"<{type(self).__name__}.{self._name_}: {self._value_!r}>"

        def __reduce_ex__(self, _protocol):
            return type(self), (self._value_,)

    class StrEnum(_Member, str, metaclass=_EnumType):
        def __str__(self):
            return str.__str__(self)

        def __format__(self, spec):
            return str.__format__(self, spec)

    class IntEnum(_Member, int, metaclass=_EnumType):
        def __str__(self):
            return int.__repr__(self)

        def __format__(self, spec):
            return int.__format__(self, spec)


__all__ = [
    "FrozenInstanceError",
    "IntEnum",
    "StrEnum",
    "asdict",
    "dataclass",
    "field",
    "fields",
    "replace",
]
