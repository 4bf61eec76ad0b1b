"""The Proware process: settings, the operator command line, and the waitress server.

What runs the service rather than what it is: :mod:`server.config` reads config.toml into
one typed object, :mod:`server.cli` parses ``python app.py COMMAND`` and hands each command
to :mod:`server.commands` or :mod:`server.admin_commands`, :mod:`server.httpserver` serves
the app with waitress, and :mod:`server.processes` runs several server processes on one
listening socket (``serve --processes N``, PostgreSQL only). :mod:`server.requestcost`
measures what each request cost, for the slow-request log. ``app.py`` composes the app
itself.

This package sits above everything else: it may import ``admin``, ``scim`` and ``storage``;
none of them imports it.
"""
