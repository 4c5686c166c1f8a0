"""The track stage: orders detections, follows people across frames, publishes results.

- ``process``: the process (``python -m stages.track``): flags, sockets, the poll loop, ``--replay``;
- ``stage``: ``TrackStage``, each job through its phases, fed by the loop or a recording, no sockets set up;
- ``delivery``: at-least-once delivery between decode and this stage, both halves;
- ``reorder``: detections back in frame order, duplicates refused;
- ``sinks``: where published messages go (job log, results socket, status, recording, files);
- ``history``: the history link, a job's results from any frame.
"""
