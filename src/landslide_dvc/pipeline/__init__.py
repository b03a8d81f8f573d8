"""The DVC stages: one module per stage, named after it (``pipeline/<stage>.py`` for
``stages/<stage>.py``), plus the pipeline's own files and paths. Pipeline imports core and formats."""
