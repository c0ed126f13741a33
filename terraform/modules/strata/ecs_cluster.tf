# The ECS cluster both services run in (Fargate: see the module README for why), and the
# private DNS name through which agents find the metadata service.

resource "aws_ecs_cluster" "this" {
  name = var.name
  tags = local.tags

  # Container Insights publishes the network metrics the agents scale on.
  setting {
    name  = "containerInsights"
    value = var.container_insights
  }
}

# Agents reach the metadata service as metadata.<namespace>:9093 through Cloud Map: ECS
# registers each healthy metadata task's IP as an A record and removes it when the task
# stops. This avoids an internal load balancer in the middle of the agents' long-lived
# gRPC connections (the high-watermark watch stream may be idle for minutes, and an NLB
# silently drops idle TCP flows after 350 seconds), lets the metadata security group name
# the agents' group directly, and costs nothing per hour.
resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.service_discovery_namespace
  description = "Private names of the ${var.name} Strata services"
  vpc         = var.vpc_id
  tags        = local.tags
}

resource "aws_service_discovery_service" "metadata" {
  name = "metadata"
  tags = local.tags

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "A"
      # Short, so a replaced metadata task stops being resolved quickly.
      ttl = 10
    }
  }

  # ECS reports task health (the container health check) to Cloud Map.
  health_check_custom_config {
    failure_threshold = 1
  }
}

locals {
  service_discovery_namespace = var.service_discovery_namespace != null ? var.service_discovery_namespace : "${var.name}.internal"
  metadata_host               = "${aws_service_discovery_service.metadata.name}.${aws_service_discovery_private_dns_namespace.this.name}"
  metadata_url                = "http://${local.metadata_host}:${local.metadata_port}"
}
