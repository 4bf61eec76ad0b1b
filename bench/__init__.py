"""``make bench``: the real service driven the way Entra drives it (``python -m bench.run``).

:mod:`bench.run` drives phases with :mod:`bench.client` over the workload of
:mod:`bench.entra` and :mod:`bench.unloaded`, collects :mod:`bench.results`, judges them
with :mod:`bench.targets` and prints :mod:`bench.report`; :mod:`bench.store_micro` and
:mod:`bench.app_micro` time the store alone and the app without HTTP. Imports anything
of Proware (it measures all of it); nothing imports it.
"""
