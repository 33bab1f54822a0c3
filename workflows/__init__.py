"""Workflows built on get_md models (installed as ``get_md.workflows``).

Modules: ``rescoring`` (rescore docking poses and trajectory frames; ``poses`` and
``trajectory`` re-export it and register its ``get-md`` subcommands), ``nbody`` (N-body
data, training, evaluation, rollout), ``demo``. Each registers its ``get-md``
subcommand through ``register_cli``.
"""
