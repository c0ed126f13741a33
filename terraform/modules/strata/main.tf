# Shared lookups and names. Each concern lives in its own file:
#   s3.tf               the bucket that holds every record (segment objects)
#   rds.tf              PostgreSQL for the metadata service
#   ecs_cluster.tf      the ECS cluster and the metadata service's DNS name
#   ecs_metadata.tf     the metadata service (gRPC on 9093)
#   ecs_agent.tf        the agents (Kafka on 9092) and their autoscaling
#   nlb.tf              the network load balancer clients bootstrap through
#   iam.tf              task and execution roles
#   security_groups.tf  who may talk to whom
#   logs.tf             CloudWatch log groups

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

# One lookup per task subnet, to name the availability zones the NLB serves.
data "aws_subnet" "tasks" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Strata's default ports (docs/configuration.md, the design's port table).
  kafka_port         = 9092
  metadata_port      = 9093
  cache_peer_port    = 9094
  agent_http_port    = 9095
  metadata_http_port = 9096

  availability_zones  = distinct([for s in data.aws_subnet.tasks : s.availability_zone])
  database_subnet_ids = var.database_subnet_ids != null ? var.database_subnet_ids : var.subnet_ids
  metrics_cidr_blocks = var.metrics_cidr_blocks != null ? var.metrics_cidr_blocks : [data.aws_vpc.this.cidr_block]

  agent_image      = coalesce(var.agent_image, var.image)
  kafka_cluster_id = coalesce(var.kafka_cluster_id, var.name)

  tags = merge(var.tags, { "strata:deployment" = var.name })
}
