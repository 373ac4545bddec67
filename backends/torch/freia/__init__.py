"""FrEIA's API on flowcore: two import lines change, the code stays.

::

    import flowcore.backends.torch.freia.framework as Ff  # was: import FrEIA.framework as Ff
    import flowcore.backends.torch.freia.modules as Fm    # was: import FrEIA.modules as Fm

:mod:`.modules` has FrEIA's module names with FrEIA's constructors (dims first),
``InvertibleModule`` as a base class for a user's own modules; :mod:`.framework` has
``SequenceINN``, ``GraphINN`` and the node classes with FrEIA's attributes; :mod:`.utils`
has ``plot_graph``. Their ``state_dict`` has FrEIA's layout (:mod:`.checkpoint`), and
:func:`from_freia` (:mod:`.importer`) reads a built FrEIA, anomalib or drop-in model into a
flowcore model in any backend.

**Which FrEIA.** By default the blocks compute what FrEIA 0.2 (the release on the package
index, and what anomalib vendors) computes; :func:`use_freia` ``("master")`` switches the
blocks built afterwards to FrEIA master's behaviour. The differences are listed in
:data:`.modules.VERSION_OPTIONS`.
"""

from .importer import from_freia, spec_from_freia
from .versions import FREIA_VERSIONS, freia_version, use_freia

__all__ = ["FREIA_VERSIONS", "freia_version", "from_freia", "spec_from_freia", "use_freia"]
