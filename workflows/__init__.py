"""Workflows built on get_md models (installed as ``get_md.workflows``).

Modules: ``poses`` (rescore docking poses), ``trajectory`` (rescore trajectory
frames), ``nbody`` (N-body data, training, evaluation, rollout), ``md`` (run MD
with a model). Each registers its ``get-md`` subcommand through ``register_cli``.
"""
