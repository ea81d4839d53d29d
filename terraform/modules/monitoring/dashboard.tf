locals {
  pubsub_chart = {
    for title, metric in {
      "Jobs waiting (undelivered messages)" = "pubsub.googleapis.com/subscription/num_undelivered_messages"
      "Oldest unacknowledged job (seconds)" = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
      } : title => {
      title = title
      xyChart = {
        dataSets = [{
          plotType = "LINE"
          timeSeriesQuery = {
            timeSeriesFilter = {
              filter      = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.jobs_subscription}\" AND metric.type = \"${metric}\""
              aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
            }
          }
        }]
      }
    }
  }
}

resource "google_monitoring_dashboard" "this" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "gpupipe (${var.prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        { xPos = 0, yPos = 0, width = 6, height = 4, widget = local.pubsub_chart["Jobs waiting (undelivered messages)"] },
        { xPos = 6, yPos = 0, width = 6, height = 4, widget = local.pubsub_chart["Oldest unacknowledged job (seconds)"] },
        {
          xPos = 0, yPos = 4, width = 6, height = 4
          widget = {
            title = "Dead-letter backlog"
            xyChart = {
              dataSets = [for name in values(var.dead_letter_subscriptions) : {
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
                    aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                  }
                }
              }]
            }
          }
        },
        {
          xPos = 6, yPos = 4, width = 6, height = 4
          widget = {
            title = "Worker errors per minute"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "resource.type = one_of(\"cloud_run_job\", \"k8s_container\") AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.worker_errors.name}\""
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = "ALIGN_RATE"
                      crossSeriesReducer = "REDUCE_SUM"
                    }
                  }
                }
              }]
            }
          }
        },
      ]
    }
  })
}
