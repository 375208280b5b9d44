"""``evoforge.selection`` is :mod:`evoforge.variation.selection` (an alias kept for users): this module puts
the real one in its place in ``sys.modules``, so both names are one module object."""

import sys

from .variation import selection as _module

sys.modules[__name__] = _module
