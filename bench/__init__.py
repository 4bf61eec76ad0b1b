"""``make bench``: the real service driven the way Entra drives it (``python -m bench.run``).

:mod:`bench.run` reads :mod:`bench.options`, runs every size with every variant of
:mod:`bench.variants` (this tree; an earlier revision checked out by :mod:`bench.checkout`;
PostgreSQL from :mod:`bench.database`; several server processes) through
:mod:`bench.sizerun`, which drives phases with :mod:`bench.client` over the workload of
:mod:`bench.entra` and :mod:`bench.unloaded` and reads CPU and memory of whole process
groups with :mod:`bench.proctree`. It collects :mod:`bench.results`, judges them with
:mod:`bench.targets` and :mod:`bench.scaling`, and prints :mod:`bench.report` and the
side-by-side tables of :mod:`bench.compare`; :mod:`bench.trivial` serves the ceiling.
:mod:`bench.store_micro` and :mod:`bench.app_micro` time the store alone and the app without
HTTP. Imports anything of Proware (it measures all of it); nothing imports it.
"""
