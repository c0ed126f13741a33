output "bootstrap_servers" {
  description = "Kafka bootstrap address."
  value       = module.strata.bootstrap_servers
}

output "bootstrap_servers_by_zone" {
  description = "Zonal bootstrap addresses."
  value       = module.strata.bootstrap_servers_by_zone
}

output "bucket_name" {
  description = "S3 bucket holding the records."
  value       = module.strata.bucket_name
}

output "metadata_endpoint" {
  description = "Metadata service URL inside the VPC."
  value       = module.strata.metadata_endpoint
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = module.strata.ecs_cluster_name
}

output "client_instance_id" {
  description = "EC2 instance with kcat (aws ssm start-session --target <id>)."
  value       = var.create_client_instance ? aws_instance.client[0].id : null
}

output "private_subnet_ids" {
  description = "Private subnets (for one-off tasks such as `strata topic`)."
  value       = module.network.private_subnet_ids
}

output "agent_security_group_id" {
  description = "Security group of the agents (for one-off tasks such as `strata topic`)."
  value       = module.strata.agent_security_group_id
}

output "agent_task_definition_family" {
  description = "Task definition family of the agents."
  value       = module.strata.agent_task_definition_family
}
