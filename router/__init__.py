"""metrics-router: a fast metrics front door."""

__version__ = "0.1.0"


def compiled() -> bool:
    """True when the hot modules run as mypyc-compiled extensions (README "Performance")."""
    from .mapping import builder

    return not builder.__file__.endswith(".py")


def build_kind() -> str:
    """How this install runs, for `--version` and the start-up line."""
    return "compiled (mypyc)" if compiled() else "pure Python"
