"""`BacklogReader` over Cloud Monitoring: a subscription's num_undelivered_messages.

Pub/Sub exports the metric about once a minute, with a delay of a minute or two, so the value
is a slightly old view of the backlog; the dispatcher takes a caller's hint as a lower bound.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.gcp.errors import translated
from core.ports import BacklogReader

METRIC = "pubsub.googleapis.com/subscription/num_undelivered_messages"


class MonitoringBacklogReader(BacklogReader):
    def __init__(
        self, project_id: str, *, client: Any = None, lookback_seconds: int = 300, timeout: float = 10.0
    ) -> None:
        """`client` is a monitoring_v3.MetricServiceClient (built on first use when omitted)."""
        self._project_id = project_id
        self._client = client
        self._lookback_seconds = lookback_seconds
        self._timeout = timeout

    def _metrics(self) -> Any:
        if self._client is None:
            from google.cloud import monitoring_v3

            self._client = monitoring_v3.MetricServiceClient()
        return self._client

    def undelivered_messages(self, subscription: str) -> int:
        from google.cloud import monitoring_v3

        now = int(time.time())
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self._project_id}",
            filter=f'metric.type = "{METRIC}" AND resource.labels.subscription_id = "{subscription}"',
            interval=monitoring_v3.TimeInterval(
                end_time={"seconds": now}, start_time={"seconds": now - self._lookback_seconds}
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        with translated(f"read the backlog of {subscription}"):
            series = list(self._metrics().list_time_series(request=request, timeout=self._timeout))
        # Points come newest first; one series per subscription, but take the largest if several.
        latest = [s.points[0].value.int64_value for s in series if len(s.points) > 0]
        return max(latest, default=0)
