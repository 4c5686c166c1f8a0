"""The launcher behind ``posebus`` (``python launch.py``): the pipeline of stage processes and what drives it.

``launcher.cli``: the command line (run, serve, status, worker, models, download-models).
``launcher.pipeline``: starting, supervising and stopping the stages, and the job records.
``launcher.control``: ``posebus serve``, jobs taken on the control socket.
``launcher.workers``: detect workers' command lines and ``--worker-links`` for workers on other hosts.
``launcher.progress``: the progress line of a one-off run.
``launcher.monitor``: relaying the stages' metrics, ``posebus status``; ``launcher.prometheus``: the exporter.
"""
