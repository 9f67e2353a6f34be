"""Exceptions users may catch, importable without loading torch."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, tampered with or does not match the model."""


def did_you_mean(name: str, choices: list[str], limit: int = 4, also: list[str] | tuple[str, ...] = ()) -> str:
    """``"did you mean a, b? "`` naming up to ``limit`` of ``choices`` closest to a misspelt
    ``name`` (difflib), then any of ``also`` not named yet; ``""`` when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=limit, cutoff=0.5)
    close += [c for c in also if c not in close]
    return f"did you mean {', '.join(close[:limit])}? " if close else ""
