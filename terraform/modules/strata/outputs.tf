output "bootstrap_servers" {
  description = "Kafka bootstrap address (the load balancer's DNS name and port 9092), for bootstrap.servers / kcat -b."
  value       = "${aws_lb.kafka.dns_name}:${local.kafka_port}"
}

output "bootstrap_servers_by_zone" {
  description = "Zonal bootstrap address per availability zone. A client that lists its own zone's address first bootstraps to an agent in its zone (cross-zone load balancing is off)."
  value       = { for az in local.availability_zones : az => "${az}.${aws_lb.kafka.dns_name}:${local.kafka_port}" }
}

output "kafka_load_balancer_arn" {
  description = "ARN of the Kafka network load balancer."
  value       = aws_lb.kafka.arn
}

output "bucket_name" {
  description = "Name of the S3 bucket that holds the segment objects."
  value       = aws_s3_bucket.data.id
}

output "bucket_arn" {
  description = "ARN of the S3 bucket."
  value       = aws_s3_bucket.data.arn
}

output "bucket_url" {
  description = "Bucket URL the agents use (STRATA_BUCKET)."
  value       = local.agent_environment["STRATA_BUCKET"]
}

output "metadata_endpoint" {
  description = "Metadata service URL (STRATA_METADATA), resolvable inside the VPC; `strata topic --metadata <this>` from a host in metadata_client_security_group_ids."
  value       = local.metadata_url
}

output "db_endpoint" {
  description = "host:port of the PostgreSQL instance."
  value       = aws_db_instance.metadata.endpoint
}

output "db_instance_identifier" {
  description = "RDS instance identifier (for snapshots before upgrades)."
  value       = aws_db_instance.metadata.identifier
}

output "db_secret_arn" {
  description = "ARN of the Secrets Manager secret with the database user name and password (managed and rotated by RDS)."
  value       = local.db_secret_arn
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "agent_service_name" {
  description = "Name of the agents' ECS service."
  value       = aws_ecs_service.agent.name
}

output "metadata_service_name" {
  description = "Name of the metadata service's ECS service."
  value       = aws_ecs_service.metadata.name
}

output "agent_task_definition_family" {
  description = "Task definition family of the agents (run one-off `strata topic` tasks with it)."
  value       = aws_ecs_task_definition.agent.family
}

output "agent_security_group_id" {
  description = "Security group of the agent tasks."
  value       = aws_security_group.agent.id
}

output "metadata_security_group_id" {
  description = "Security group of the metadata tasks."
  value       = aws_security_group.metadata.id
}

output "kafka_load_balancer_security_group_id" {
  description = "Security group of the Kafka load balancer."
  value       = aws_security_group.kafka_nlb.id
}

output "agent_task_role_arn" {
  description = "IAM role of the agent tasks (S3 access under the Strata prefix)."
  value       = aws_iam_role.agent_task.arn
}

output "log_group_names" {
  description = "CloudWatch log groups of the agents and the metadata service."
  value = {
    agent    = aws_cloudwatch_log_group.agent.name
    metadata = aws_cloudwatch_log_group.metadata.name
  }
}
