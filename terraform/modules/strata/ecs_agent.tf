# The agents: `strata agent`, the stateless Kafka brokers, on 9092.
#
# scripts/agent-entrypoint.sh runs first, inside the container. It reads the task's own
# private IP and availability zone from the ECS task metadata endpoint (v4) and sets:
#   STRATA_ADVERTISED_ADDR   <task IP>:9092, the address Metadata responses give clients
#   STRATA_NODE_ID           derived from the task IP, so it differs between live agents
#   STRATA_AVAILABILITY_ZONE the task's zone, for zone-aware partition placement
#   STRATA_CACHE_ADVERTISED_ADDR <task IP>:9094 when the agent serves the cache role
# then execs `strata agent`. Clients bootstrap through the load balancer (nlb.tf) and
# then connect to the agents' advertised task IPs directly.

locals {
  agent_environment = merge(
    {
      STRATA_LOG                  = var.log_level
      STRATA_KAFKA_LISTEN         = "0.0.0.0:${local.kafka_port}"
      STRATA_METADATA             = local.metadata_url
      STRATA_BUCKET               = "s3://${aws_s3_bucket.data.id}/${local.bucket_prefix}"
      STRATA_S3_REGION            = local.region
      STRATA_CLUSTER_ID           = local.kafka_cluster_id
      STRATA_FLUSH_INTERVAL       = var.agent_flush_interval
      STRATA_FLUSH_BYTES          = tostring(var.agent_flush_bytes)
      STRATA_MAX_INFLIGHT_UPLOADS = tostring(var.agent_max_inflight_uploads)
      STRATA_READ_CACHE_BYTES     = tostring(var.agent_read_cache_bytes)
      STRATA_AUTO_CREATE_TOPICS   = tostring(var.agent_auto_create_topics)
      STRATA_DEFAULT_PARTITIONS   = tostring(var.agent_default_partitions)
    },
    var.agent_cache_role ? { STRATA_CACHE_LISTEN = "0.0.0.0:${local.cache_peer_port}" } : {},
    var.agent_environment,
  )

  agent_container = {
    name      = "agent"
    image     = local.agent_image
    essential = true

    entryPoint = ["/bin/sh", "-c"]
    command    = [file("${path.module}/scripts/agent-entrypoint.sh")]

    portMappings = [
      { name = "kafka", containerPort = local.kafka_port, protocol = "tcp" },
      { name = "cache", containerPort = local.cache_peer_port, protocol = "tcp" },
      { name = "http", containerPort = local.agent_http_port, protocol = "tcp" },
    ]

    environment = [for k, v in local.agent_environment : { name = k, value = v }]

    readonlyRootFilesystem = true
    # ECS sends SIGTERM, waits this long, then SIGKILL. The agent's drain (stop reading
    # requests, flush and commit the open segment, answer producers) must fit in it.
    stopTimeout = var.agent_stop_timeout

    ulimits = [
      { name = "nofile", softLimit = var.agent_nofile_limit, hardLimit = var.agent_nofile_limit },
    ]

    # The HTTP /readyz endpoint (9095) is planned; until then the check is that the Kafka
    # port accepts connections.
    healthCheck = {
      command     = ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${local.kafka_port}"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.agent.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "agent"
      }
    }
  }
}

resource "aws_ecs_task_definition" "agent" {
  family                   = "${var.name}-agent"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.agent_cpu)
  memory                   = tostring(var.agent_memory)
  execution_role_arn       = aws_iam_role.agent_execution.arn
  task_role_arn            = aws_iam_role.agent_task.arn
  container_definitions    = jsonencode([local.agent_container])
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

resource "aws_ecs_service" "agent" {
  name             = "${var.name}-agent"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.agent.arn
  desired_count    = var.agent_min_count
  launch_type      = "FARGATE"
  platform_version = var.fargate_platform_version

  # Rolling deployment that adds capacity first: new agents start and pass their health
  # checks, then old ones are deregistered from the load balancer and get SIGTERM.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30

  enable_execute_command  = var.enable_execute_command
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"
  tags                    = local.tags

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Fargate spreads the tasks of a service across the subnets' availability zones.
  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.agent.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.kafka.arn
    container_name   = "agent"
    container_port   = local.kafka_port
  }

  lifecycle {
    # Autoscaling owns the task count after creation.
    ignore_changes = [desired_count]
  }

  depends_on = [
    aws_lb_listener.kafka,
    aws_iam_role_policy.agent_execution,
    aws_iam_role_policy.agent_task,
    aws_vpc_security_group_ingress_rule.metadata_from_agent,
  ]
}

# ---------------------------------------------------------------------------
# Autoscaling: target tracking on CPU and on network bytes per task. Target tracking
# scales out when any policy asks for more tasks and scales in only when all agree.
# ---------------------------------------------------------------------------

resource "aws_appautoscaling_target" "agent" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.agent.name}"
  min_capacity       = var.agent_min_count
  max_capacity       = var.agent_max_count
  tags               = local.tags
}

resource "aws_appautoscaling_policy" "agent_cpu" {
  name               = "${var.name}-agent-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.agent.service_namespace
  scalable_dimension = aws_appautoscaling_target.agent.scalable_dimension
  resource_id        = aws_appautoscaling_target.agent.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.agent_cpu_target_percent
    scale_in_cooldown  = var.agent_scale_in_cooldown
    scale_out_cooldown = var.agent_scale_out_cooldown

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# Container Insights publishes NetworkRxBytes / NetworkTxBytes (bytes per second) and
# RunningTaskCount for the service once a minute. The policy tracks their ratio, the
# average rate per agent task: adding agents lowers it, which is what target tracking
# needs. (Dividing the service's Sum by the task count gives the per-task rate whether
# Container Insights reports one data point per task or one per service.)
locals {
  agent_network_policies = {
    for k, v in {
      rx = { metric = "NetworkRxBytes", target = var.agent_network_rx_target_bytes }
      tx = { metric = "NetworkTxBytes", target = var.agent_network_tx_target_bytes }
    } : k => v if v.target != null
  }
}

resource "aws_appautoscaling_policy" "agent_network" {
  for_each = local.agent_network_policies

  name               = "${var.name}-agent-network-${each.key}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.agent.service_namespace
  scalable_dimension = aws_appautoscaling_target.agent.scalable_dimension
  resource_id        = aws_appautoscaling_target.agent.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.target
    scale_in_cooldown  = var.agent_scale_in_cooldown
    scale_out_cooldown = var.agent_scale_out_cooldown

    customized_metric_specification {
      metrics {
        id          = "service_bytes"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = each.value.metric

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.agent.name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.agent.name
            }
          }
        }
      }

      metrics {
        id          = "per_task"
        label       = "${each.value.metric} per agent task (bytes/second)"
        expression  = "service_bytes / tasks"
        return_data = true
      }
    }
  }
}
