"""The exceptions C++ errors arrive as, with the C++ message."""
from ._native import core as _core

#: An error from the C++ core: a bad file, a failed step, a rank that failed.
Error = _core.Error
Error.__module__ = "qianjun"
Error.__qualname__ = Error.__name__ = "Error"

#: A configuration error (subclass of :class:`Error` and ``ValueError``): an
#: unknown key or a wrong type or value (the message names the field and, for a
#: misspelt key, the nearest real one), an unreadable config file, or a layout
#: that does not fit the ranks.
ConfigError = _core.ConfigError
ConfigError.__module__ = "qianjun"
ConfigError.__qualname__ = ConfigError.__name__ = "ConfigError"
