"""What the synthetic generators' configs share: built from a mapping whose unknown keys are
named, and from a config table ``{"preset": "demo" | "quick", **overrides}``.

:class:`~baselens.data.synthetic.SyntheticConfig` (the screen) and
:class:`~baselens.data.tissue.SyntheticTissueConfig` (the tissue) are dataclasses with
``demo()`` and ``quick()`` presets and ``to_dict()``; both take :class:`PresetConfig` as
their base, so ``[data.synthetic]`` and ``[data.synthetic_tissue]`` read the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = ["PRESETS", "PresetConfig"]

#: Preset names every generator config has (classmethods of that name).
PRESETS: tuple[str, ...] = ("demo", "quick")


class PresetConfig:
    """Base of a generator's dataclass config (see the module docstring).

    Subclasses are dataclasses with the classmethods named in :data:`PRESETS` and
    ``to_dict()``; a subclass that normalizes or validates after building overrides
    :meth:`from_dict` and calls ``super().from_dict(d)`` first.
    """

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Build a config from a mapping; unknown keys raise a ``ValueError`` naming them.

        Parameters
        ----------
        d : mapping
            Field name → value.

        Returns
        -------
        PresetConfig
            An instance of ``cls``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}; "
                             f"valid keys: {', '.join(sorted(names))}")
        return cls(**dict(d))

    @classmethod
    def from_preset(cls, d: Mapping[str, Any]):
        """The config a config table describes: a preset and the knobs it overrides.

        Parameters
        ----------
        d : mapping
            ``{"preset": "demo" | "quick", **overrides}``; ``preset`` defaults to
            ``"demo"``.

        Returns
        -------
        PresetConfig
            ``cls.<preset>()`` with ``overrides`` applied (unknown keys raise, as in
            :meth:`from_dict`).
        """
        d = dict(d)
        preset = d.pop("preset", "demo")
        if preset not in PRESETS:
            raise ValueError(f"preset must be 'demo' or 'quick', got {preset!r}")
        return cls.from_dict({**getattr(cls, preset)().to_dict(), **d})
