# ---------------------------------------------------------------------------
# Deployment and network
# ---------------------------------------------------------------------------

variable "name" {
  type        = string
  default     = "strata"
  description = "Name of this deployment; prefixes every resource name (load balancer and target group names allow 32 characters, so keep it short)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource that takes tags."
}

variable "vpc_id" {
  type        = string
  description = "VPC to deploy into. It needs DNS support and DNS hostnames enabled (the metadata service's private DNS name lives in a Route 53 zone attached to it)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the agent and metadata tasks and the Kafka load balancer, at most one per availability zone. They need a route to S3 (a gateway endpoint is best), ECR and CloudWatch Logs (NAT or interface endpoints)."

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "database_subnet_ids" {
  type        = list(string)
  default     = null
  description = "Subnets for the RDS subnet group (RDS needs two availability zones even for a single-AZ instance). Null uses subnet_ids."
}

variable "kafka_client_cidr_blocks" {
  type        = list(string)
  default     = []
  description = "IPv4 CIDR blocks of Kafka clients. They may reach port 9092 on the load balancer and on every agent (clients connect to the agents' own addresses after bootstrapping)."
}

variable "kafka_client_security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups of Kafka clients in this VPC; same access as kafka_client_cidr_blocks."
}

variable "metadata_client_security_group_ids" {
  type        = list(string)
  default     = []
  description = "Security groups (besides the agents') allowed to call the metadata service on 9093, e.g. an operator host running `strata topic`."
}

variable "metrics_cidr_blocks" {
  type        = list(string)
  default     = null
  description = "CIDR blocks allowed to scrape the HTTP ports (9095 agent, 9096 metadata: /metrics, /healthz, /readyz). Null means the VPC's primary CIDR block."
}

# ---------------------------------------------------------------------------
# Image and Strata settings
# ---------------------------------------------------------------------------

variable "image" {
  type        = string
  description = "Container image with the `strata` binary (built from the repository's Dockerfile), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/strata:0.1.0."
}

variable "agent_image" {
  type        = string
  default     = null
  description = "Image for the agents only; null uses image. Lets an upgrade roll the metadata service first and the agents second."
}

variable "cpu_architecture" {
  type        = string
  default     = "X86_64"
  description = "CPU architecture of the tasks: X86_64 or ARM64 (Graviton, cheaper per vCPU-hour; the image must be built for linux/arm64)."

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "log_level" {
  type        = string
  default     = "info"
  description = "STRATA_LOG for every task: a tracing filter such as info or strata_agent=debug."
}

variable "kafka_cluster_id" {
  type        = string
  default     = null
  description = "Cluster id the agents report to Kafka clients (STRATA_CLUSTER_ID). Null uses name."
}

variable "agent_flush_interval" {
  type        = string
  default     = "100ms"
  description = "STRATA_FLUSH_INTERVAL: longest time a produced batch waits for its segment flush. Longer means fewer, larger S3 PUTs (cheaper) and higher produce latency."
}

variable "agent_flush_bytes" {
  type        = number
  default     = 8388608
  description = "STRATA_FLUSH_BYTES: flush a segment once it holds this many bytes."
}

variable "agent_max_inflight_uploads" {
  type        = number
  default     = 4
  description = "STRATA_MAX_INFLIGHT_UPLOADS: segment uploads in flight at once per agent."
}

variable "agent_read_cache_bytes" {
  type        = number
  default     = 1073741824
  description = "STRATA_READ_CACHE_BYTES: bytes of segment blocks each agent caches. Keep it well below agent_memory."
}

variable "agent_cache_role" {
  type        = bool
  default     = true
  description = "Agents also serve the cache role on port 9094 (STRATA_CACHE_LISTEN): each owns a share of the segment blocks on a rendezvous ring and serves them to the others, so a block is read from S3 about once per zone instead of once per agent."
}

variable "agent_auto_create_topics" {
  type        = bool
  default     = false
  description = "STRATA_AUTO_CREATE_TOPICS: create unknown topics on Metadata requests. Off by default in production; create topics with `strata topic create` or a Kafka admin client."
}

variable "agent_default_partitions" {
  type        = number
  default     = 1
  description = "STRATA_DEFAULT_PARTITIONS: partitions of auto-created topics and of CreateTopics with -1."
}

variable "agent_environment" {
  type        = map(string)
  default     = {}
  description = "Extra environment variables for the agent container (any STRATA_* setting from docs/configuration.md). They override the module's own values."
}

variable "metadata_environment" {
  type        = map(string)
  default     = {}
  description = "Extra environment variables for the metadata container. They override the module's own values."
}

# ---------------------------------------------------------------------------
# S3 bucket
# ---------------------------------------------------------------------------

variable "bucket_name" {
  type        = string
  default     = null
  description = "Name of the bucket for segment objects. Null uses <name>-<account id>-<region>."
}

variable "bucket_prefix" {
  type        = string
  default     = "strata"
  description = "Key prefix under which Strata writes (the agents get s3://<bucket>/<prefix>). IAM access is limited to it."

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.bucket_prefix))
    error_message = "bucket_prefix must be non-empty, without leading or trailing '/'."
  }
}

variable "bucket_force_destroy" {
  type        = bool
  default     = false
  description = "Let `terraform destroy` delete the bucket with every object in it. Only for throwaway deployments."
}

variable "bucket_versioning" {
  type        = bool
  default     = false
  description = "Enable S3 versioning. Off by default: Strata never overwrites an object (keys are unique, PUTs are create-only) and deletes only what retention or GC chose to delete, so versions would only keep deleted data billable. Once enabled, S3 versioning can be suspended but not switched off."
}

variable "bucket_noncurrent_version_expiration_days" {
  type        = number
  default     = 7
  description = "With bucket_versioning on: days after which deleted (noncurrent) object versions are removed."
}

variable "bucket_kms_key_arn" {
  type        = string
  default     = null
  description = "Customer managed KMS key for SSE-KMS on the bucket. Null uses SSE-S3 (AES256, no KMS request charges). With a key, S3 Bucket Keys are enabled to keep KMS calls per PUT/GET low."
}

variable "bucket_access_log_bucket" {
  type        = string
  default     = null
  description = "Bucket to receive S3 server access logs for the data bucket; null turns access logging off. Expect one log line per segment PUT and per chunk GET."
}

variable "abort_incomplete_multipart_upload_days" {
  type        = number
  default     = 1
  description = "Days after which S3 removes the parts of multipart uploads that were never completed (e.g. an agent killed mid-upload)."
}

# ---------------------------------------------------------------------------
# RDS PostgreSQL (metadata store)
# ---------------------------------------------------------------------------

variable "db_engine_version" {
  type        = string
  default     = "16"
  description = "PostgreSQL engine version. A major version (\"16\") lets RDS pick and upgrade the minor version."
}

variable "db_instance_class" {
  type        = string
  default     = "db.m7g.large"
  description = "RDS instance class of the metadata store."
}

variable "db_allocated_storage" {
  type        = number
  default     = 50
  description = "Initial storage in GiB (gp3)."
}

variable "db_max_allocated_storage" {
  type        = number
  default     = 500
  description = "Upper limit in GiB for RDS storage autoscaling; equal to db_allocated_storage turns autoscaling off."
}

variable "db_multi_az" {
  type        = bool
  default     = true
  description = "Run the database as Multi-AZ (a synchronous standby in another zone, automatic failover)."
}

variable "db_backup_retention_days" {
  type        = number
  default     = 7
  description = "Days RDS keeps automated backups (point-in-time recovery window). 0 disables backups; keep it above 0 in production."

  validation {
    condition     = var.db_backup_retention_days >= 0 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 0 and 35."
  }
}

variable "db_backup_window" {
  type        = string
  default     = "03:00-04:00"
  description = "Daily UTC window for automated backups (hh24:mi-hh24:mi); must not overlap db_maintenance_window."
}

variable "db_maintenance_window" {
  type        = string
  default     = "sun:04:30-sun:05:30"
  description = "Weekly UTC window for RDS maintenance (ddd:hh24:mi-ddd:hh24:mi)."
}

variable "db_deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse to delete the database (set false before destroying a deployment)."
}

variable "db_skip_final_snapshot" {
  type        = bool
  default     = false
  description = "Delete the database without a final snapshot. Only for throwaway deployments."
}

variable "db_apply_immediately" {
  type        = bool
  default     = false
  description = "Apply database changes now instead of in the next maintenance window."
}

variable "db_name" {
  type        = string
  default     = "strata"
  description = "Name of the database the metadata service uses."
}

variable "db_username" {
  type        = string
  default     = "strata"
  description = "Master user name. RDS generates the password and keeps it in Secrets Manager."
}

variable "db_url_options" {
  type        = string
  default     = "sslmode=require"
  description = "Query string appended to the postgres:// URL the metadata service gets (STRATA_STORE). The parameter group forces TLS, so keep sslmode=require or stricter."
}

variable "db_kms_key_arn" {
  type        = string
  default     = null
  description = "Customer managed KMS key for the database storage, its Secrets Manager secret and Performance Insights. Null uses the AWS managed keys."
}

variable "db_performance_insights_enabled" {
  type        = bool
  default     = true
  description = "Enable Performance Insights (7 days of history are free)."
}

variable "db_monitoring_interval" {
  type        = number
  default     = 60
  description = "Seconds between Enhanced Monitoring samples: 0 (off), 1, 5, 10, 15, 30 or 60."

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.db_monitoring_interval)
    error_message = "db_monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "db_log_min_duration_ms" {
  type        = number
  default     = 500
  description = "PostgreSQL log_min_duration_statement: log statements slower than this many milliseconds (-1 turns it off)."
}

# ---------------------------------------------------------------------------
# ECS (Fargate)
# ---------------------------------------------------------------------------

variable "container_insights" {
  type        = string
  default     = "enabled"
  description = "ECS Container Insights: enabled or enhanced. It publishes the network and task-count metrics the agents' autoscaling uses, so it cannot be disabled here."

  validation {
    condition     = contains(["enabled", "enhanced"], var.container_insights)
    error_message = "container_insights must be enabled or enhanced."
  }
}

variable "fargate_platform_version" {
  type        = string
  default     = "LATEST"
  description = "Fargate platform version (1.4.0 or later is needed for task metadata endpoint v4 with the availability zone)."
}

variable "enable_execute_command" {
  type        = bool
  default     = false
  description = "Allow `aws ecs execute-command` into the tasks (adds the SSM permissions to the task roles)."
}

variable "service_discovery_namespace" {
  type        = string
  default     = null
  description = "Private DNS namespace (Cloud Map) for the metadata service; agents reach it as metadata.<namespace>:9093. Null uses <name>.internal."
}

variable "metadata_cpu" {
  type        = number
  default     = 512
  description = "CPU units of a metadata task (1024 = 1 vCPU); must be a Fargate CPU/memory combination with metadata_memory."
}

variable "metadata_memory" {
  type        = number
  default     = 1024
  description = "Memory (MiB) of a metadata task."
}

variable "metadata_desired_count" {
  type        = number
  default     = 2
  description = "Number of metadata tasks. Two or more keep the service answering while one is replaced; see the module README for what several instances rely on."

  validation {
    condition     = var.metadata_desired_count >= 1
    error_message = "metadata_desired_count must be at least 1."
  }
}

variable "metadata_stop_timeout" {
  type        = number
  default     = 30
  description = "Seconds ECS waits after SIGTERM before killing a metadata task (Fargate allows at most 120)."

  validation {
    condition     = var.metadata_stop_timeout >= 2 && var.metadata_stop_timeout <= 120
    error_message = "metadata_stop_timeout must be between 2 and 120 seconds."
  }
}

variable "agent_cpu" {
  type        = number
  default     = 2048
  description = "CPU units of an agent task (1024 = 1 vCPU). Planning figure: about 100 MB/s of ingest per 2 vCPU (check docs/benchmarks.md)."
}

variable "agent_memory" {
  type        = number
  default     = 4096
  description = "Memory (MiB) of an agent task."
}

variable "agent_min_count" {
  type        = number
  default     = 3
  description = "Fewest agent tasks (autoscaling floor); use at least one per availability zone so every zone has a local agent."

  validation {
    condition     = var.agent_min_count >= 1
    error_message = "agent_min_count must be at least 1."
  }
}

variable "agent_max_count" {
  type        = number
  default     = 12
  description = "Most agent tasks (autoscaling ceiling)."
}

variable "agent_cpu_target_percent" {
  type        = number
  default     = 60
  description = "Target average CPU utilisation of the agents for target-tracking autoscaling."
}

variable "agent_network_rx_target_bytes" {
  type        = number
  default     = 62914560
  description = "Target average bytes per second received per agent task (Container Insights NetworkRxBytes), i.e. produce traffic; null disables this scaling policy. Default 60 MiB/s, about 60% of the 100 MB/s planning figure."
}

variable "agent_network_tx_target_bytes" {
  type        = number
  default     = 125829120
  description = "Target average bytes per second sent per agent task (Container Insights NetworkTxBytes), i.e. fetch traffic plus S3 uploads; null disables this scaling policy."
}

variable "agent_scale_in_cooldown" {
  type        = number
  default     = 300
  description = "Seconds after a scale-in before another scale-in (each one drains agents and moves client connections)."
}

variable "agent_scale_out_cooldown" {
  type        = number
  default     = 60
  description = "Seconds after a scale-out before another scale-out."
}

variable "agent_stop_timeout" {
  type        = number
  default     = 90
  description = "Seconds ECS waits after SIGTERM before killing an agent. On SIGTERM an agent stops reading requests, flushes and commits its open segment, answers the producers and exits; this must exceed that (Fargate allows at most 120)."

  validation {
    condition     = var.agent_stop_timeout >= 10 && var.agent_stop_timeout <= 120
    error_message = "agent_stop_timeout must be between 10 and 120 seconds."
  }
}

variable "agent_nofile_limit" {
  type        = number
  default     = 65536
  description = "Open-file limit (soft and hard) of the agent container; each Kafka connection takes one."
}

# ---------------------------------------------------------------------------
# Kafka load balancer
# ---------------------------------------------------------------------------

variable "nlb_deletion_protection" {
  type        = bool
  default     = true
  description = "Refuse to delete the Kafka load balancer."
}

variable "nlb_deregistration_delay" {
  type        = number
  default     = 15
  description = "Seconds the load balancer keeps a stopping agent's connections before ECS sends it SIGTERM. Bootstrap connections are short, so this can be small; it adds to every agent replacement."
}

variable "nlb_access_logs_bucket" {
  type        = string
  default     = null
  description = "Bucket for the load balancer's access logs; null turns them off."
}

# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

variable "log_retention_days" {
  type        = number
  default     = 30
  description = "Days CloudWatch keeps the task and database logs."
}

variable "log_kms_key_arn" {
  type        = string
  default     = null
  description = "Customer managed KMS key for the CloudWatch log groups (its key policy must allow the logs service). Null uses CloudWatch's own encryption."
}
