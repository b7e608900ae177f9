"""The hosted methods, one module each, behind the interface of `base.Method`.

Importing this package imports no torch; each method's module is imported when the registry
creates that method (see `benchbox.registry`).
"""
