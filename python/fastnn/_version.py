"""The package version, in a module of its own.

Modules below the package's ``__init__`` (the backend, model saving) report the version; reading it
from here keeps them from importing the package that imports them.
"""
__version__ = "0.1.0"
