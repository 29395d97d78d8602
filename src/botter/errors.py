"""The root of every exception botter raises on purpose."""


class BotterError(Exception):
    """Base class; subclasses carry the data a caller needs to answer precisely."""
