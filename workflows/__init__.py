"""Workflows built on get_md models (installed as ``get_md.workflows``).

Modules: ``rescoring`` (rescore docking poses and trajectory frames; ``poses`` and
``trajectory`` re-export it and register its ``get-md`` subcommands), ``nbody`` (N-body
data, training, evaluation, rollout), ``md`` (MD of one structure on a potential), ``demo``.
``poses``, ``trajectory``, ``nbody``, ``md`` and ``demo`` register their ``get-md``
subcommands through ``register_cli`` (the
``get_md.commands`` entry points in pyproject.toml).
"""
