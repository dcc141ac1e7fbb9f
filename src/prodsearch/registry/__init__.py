"""Model versions of an index, evaluation-gated promotion, refresh, and the zero-downtime swap (issue 12).

* :mod:`~prodsearch.registry.store`: the ``INDEX/models/`` folder (versions, served pointer, frozen split);
* :mod:`~prodsearch.registry.evaluate`: a candidate against the served model, paired bootstrap gate;
* :mod:`~prodsearch.registry.swap`: a version's vectors built aside, the atomic switch, rollback;
* :mod:`~prodsearch.registry.refresh`: ``prodsearch refresh`` (sync, train, evaluate, promote);
* :mod:`~prodsearch.registry.commands`: the ``prodsearch models`` commands.
"""

from prodsearch.registry.store import Registry, Version, version_of

__all__ = ["Registry", "Version", "version_of"]
