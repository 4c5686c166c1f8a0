"""The launcher behind ``python launch.py``: the pipeline of stage processes and what drives it.

``launcher.pipeline``: starting, supervising and stopping the stages, and the job records.
``launcher.control``: ``launch.py serve``, jobs taken on the control socket.
``launcher.workers``: detect workers' command lines and ``--worker-links`` for workers on other hosts.
``launcher.progress``: the progress line of a one-off run.
"""
