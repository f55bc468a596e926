"""Framework integrations, one small module each (docs/integrations.md).

Nothing here is imported by ``import ml_dash``; each module imports its framework when
it is imported itself:

- ``ml_dash.integrations.lightning``: ``MLDashLogger`` for ``lightning`` (2.x);
  ``ml_dash.integrations.pytorch_lightning`` the same for the ``pytorch_lightning`` package.
- ``ml_dash.integrations.transformers``: ``MLDashCallback``, a ``TrainerCallback``.
- ``ml_dash.integrations.keras``: ``MLDashKerasCallback``, a Keras 3 ``Callback``.
"""
