"""Anonymized views: several de-identified publications of one ECG stream, each its own Flink job on a running
cluster, managed through Flink's REST API (deployment tooling: never shipped to the workers).

A view is a name, a privacy profile (k, optional l, hierarchy, window, group field, optional throttle) and its
outputs (an InfluxDB 1.x database + measurement, optional CSV folder, or an HTTP endpoint). Everything a job
would share with another is derived from the name: job name ``view-NAME``, consumer group ``ecg-view-NAME``,
transactional-id prefix ``ecg-view-NAME``, checkpoints and savepoints under ``<registry>/NAME/``.

    manager = ViewManager(Path(".run/views"), "http://127.0.0.1:8081", stack={"KAFKA_BOOTSTRAP": ...},
                          secrets={"PSEUDONYM_SECRET": ...})
    manager.create("research", Profile(k=5), Outputs(influx_db="research"))
    manager.list(); manager.stop("research"); manager.resume("research"); manager.delete("research", drop_output=True)

CLI: ``python -m views create|list|stop|resume|delete`` (``--help``).
"""

from views.manager import Outputs, Profile, View, ViewError, ViewManager, ViewStatus

__all__ = ["Outputs", "Profile", "View", "ViewError", "ViewManager", "ViewStatus"]
