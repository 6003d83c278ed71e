"""What only the Snakemake workflow calls, in plain Python so it is tested without Snakemake.

- :mod:`~s3r.workflow.sheet`: the one reader of both tab-separated sheets (line numbers, one-line errors,
  safe names, names-or-file cells) and the schema-error formatter;
- :mod:`~s3r.workflow.samples`: the spatial sample sheet and its row checks;
- :mod:`~s3r.workflow.screens`: the perturb-seq screen sheet and its checks;
- :mod:`~s3r.workflow.settings`: config (plus a row's overrides) -> library keyword arguments;
- :mod:`~s3r.workflow.paths`: where the demo rules write;
- :mod:`~s3r.workflow.jobs`: the screen fit, its figures and the deconvolution jobs;
- :mod:`~s3r.workflow.startup`: sheet × config × profile checks no schema sees (radius, deconvolution, threads);
- :mod:`~s3r.workflow.chunks`: targets of a sample in chunks (one job each), job memory and run time by size;
- :mod:`~s3r.workflow.tuning`: the tuning and final-fit jobs of a chunk (each target its own study).
- :mod:`~s3r.workflow.environment`: environment variables every job inherits (the allocator's thresholds).

``workflow/rules/common.smk`` imports the submodules by name; it must never bind the name ``workflow``,
which Snakemake already uses.
"""
