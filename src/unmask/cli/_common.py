"""What the sub-commands share: argument help built from the registries, input loading."""

from __future__ import annotations

__all__ = ["removal_help"]


def removal_help() -> str:
    """The ``--removal`` help text, listing every name of the removal registry."""
    from ..removal import removal_names

    return "removal strategy (a spec such as blur:5 or noise:seed=3): " + ", ".join(removal_names())
