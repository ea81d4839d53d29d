# One worker per task; the dispatcher runs executions with a task count sized to the backlog.
resource "google_cloud_run_v2_job" "worker" {
  project             = var.project_id
  location            = var.region
  name                = "${var.prefix}-worker"
  labels              = var.labels
  launch_stage        = var.launch_stage
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 0
    labels      = var.labels

    template {
      service_account = var.service_account_email
      timeout         = "${var.task_timeout_seconds}s"
      # A task that crashed leaves its messages to Pub/Sub redelivery; the dispatcher replaces it.
      max_retries = 0

      node_selector {
        accelerator = var.gpu.accelerator
      }
      gpu_zonal_redundancy_disabled = var.gpu.zonal_redundancy_disabled

      containers {
        image   = var.image
        command = ["python"]
        args    = ["-m", "gpu_worker", "--exit-when-idle", tostring(var.exit_when_idle_seconds)]

        resources {
          limits = {
            cpu              = var.resources.cpu
            memory           = var.resources.memory
            "nvidia.com/gpu" = "1"
          }
        }

        dynamic "env" {
          for_each = merge(var.env, { GPUPIPE_MODEL_CACHE_DIR = var.model_cache_dir })
          content {
            name  = env.key
            value = env.value
          }
        }

        env {
          name = "GPUPIPE_API_KEY_PEPPER"
          value_source {
            secret_key_ref {
              secret  = var.pepper_secret_id
              version = "latest"
            }
          }
        }

        volume_mounts {
          name       = "model-cache"
          mount_path = var.model_cache_dir
        }
      }

      volumes {
        name = "model-cache"
        empty_dir {
          medium     = "MEMORY"
          size_limit = var.resources.model_cache_size
        }
      }
    }
  }
}
