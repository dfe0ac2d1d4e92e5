"""``threading.local`` with one namespace per tasklet: what ``monkey.patch_thread()``
installs as ``threading.local``.

Libraries keep per-unit-of-work state in a ``threading.local``: SQLAlchemy's
``scoped_session``, Django's database connections, requests' digest
authentication. Tasklets of one OS thread are such units, and sharing one
connection or session between them would interleave their protocols, so each
tasklet (each greenlet, and each plain thread's own) sees its own attributes,
as gevent's patched local does. ``threading.current_thread()`` still names
the OS thread.
"""

from __future__ import annotations

import weakref
from typing import Any

from .tasklet import getcurrent

_MISSING = object()
_SLOTS = frozenset(("_local__args", "_local__spaces", "__class__"))


def _class_attribute(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


def _data_descriptor(obj: local, name: str, method: str) -> tuple[Any, Any]:
    """The class attribute ``name`` and its ``method`` (``__set__``, ``__delete__``) if
    it has one, else None; ``__dict__`` itself cannot be set or deleted."""
    if name == "__dict__":
        raise AttributeError(f"{type(obj).__name__!r} object attribute '__dict__' is read-only")
    attr = _class_attribute(type(obj), name)
    return attr, None if attr is _MISSING else getattr(type(attr), method, None)


def _namespace(obj: local) -> dict[str, Any]:
    """The calling greenlet's attributes of ``obj``; a greenlet's first use runs
    the subclass's ``__init__`` with the arguments the object was made with."""
    spaces = object.__getattribute__(obj, "_local__spaces")
    current = getcurrent()
    try:
        return spaces[current]  # type: ignore[no-any-return]
    except KeyError:
        pass
    space: dict[str, Any] = {}
    spaces[current] = space
    args, kwargs = object.__getattribute__(obj, "_local__args")
    init = type(obj).__init__
    if init is not object.__init__:
        init(obj, *args, **kwargs)
    return space


class local:
    """An object whose attributes belong to the tasklet (or thread) that sets them.

    As ``threading.local``: subclass it to give every tasklet defaults
    (``__init__`` runs, with the constructor's arguments, on each tasklet's
    first use), ``__dict__`` is the caller's namespace, and a missing
    attribute raises AttributeError. Class attributes, methods, properties
    and ``__slots__`` are shared, as there. A tasklet's namespace goes when
    its greenlet is collected.
    """

    __slots__ = ("__weakref__", "_local__args", "_local__spaces")

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        obj = object.__new__(cls)
        object.__setattr__(obj, "_local__args", (args, kwargs))
        object.__setattr__(obj, "_local__spaces", weakref.WeakKeyDictionary())
        object.__getattribute__(obj, "_local__spaces")[getcurrent()] = {}  # __init__ is next
        return obj

    def __getattribute__(self, name: str) -> Any:
        if name in _SLOTS:
            return object.__getattribute__(self, name)
        space = _namespace(self)
        if name == "__dict__":
            return space
        cls = type(self)
        attr = _class_attribute(cls, name)
        kind = type(attr)
        if attr is not _MISSING and (hasattr(kind, "__set__") or hasattr(kind, "__delete__")):
            return kind.__get__(attr, self, cls)      # a data descriptor (property, slot)
        if name in space:
            return space[name]
        if attr is not _MISSING:
            get = getattr(kind, "__get__", None)
            return attr if get is None else get(attr, self, cls)
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        attr, setter = _data_descriptor(self, name, "__set__")
        if setter is not None:
            setter(attr, self, value)
        else:
            _namespace(self)[name] = value

    def __delattr__(self, name: str) -> None:
        attr, deleter = _data_descriptor(self, name, "__delete__")
        if deleter is not None:
            deleter(attr, self)
            return
        try:
            del _namespace(self)[name]
        except KeyError:
            raise AttributeError(name) from None
