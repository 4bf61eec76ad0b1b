"""The SCIM 2.0 service (RFC 7643, RFC 7644) that Microsoft Entra ID provisions through.

- :mod:`scim.api`: the Flask blueprint: parse, authenticate, render (the only part that
  knows Flask);
- :mod:`scim.service`: what each request means for the directory, over plain dicts, with
  :mod:`scim.presentation`, :mod:`scim.membership` and :mod:`scim.activity` beside it;
- :mod:`scim.paths`, :mod:`scim.filter`, :mod:`scim.patch`, :mod:`scim.projection`,
  :mod:`scim.pagination`: the protocol's pure parts;
- :mod:`scim.definitions` (schema definitions), :mod:`scim.schemas` (marshmallow),
  :mod:`scim.errors`, :mod:`scim.constants`; :mod:`scim.tokens` (bearer tokens and the
  User Provisioning switch); :mod:`scim.settings` (``[scim]``).

May import :mod:`storage`; never ``admin``, ``server`` or ``app``.
"""
