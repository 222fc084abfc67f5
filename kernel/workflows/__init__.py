"""Declarative multi-agent workflows: documents, templates, validation and their Durable execution.

``kernel.config.models`` registers the ``workflow`` kind from ``kernel.workflows.models``, which
builds on the config base classes. Importing the config models first here keeps that cycle safe
whichever module a caller imports first.
"""

from kernel.config import models as _config_models  # noqa: F401  (see the docstring)
