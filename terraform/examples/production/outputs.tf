output "bootstrap_servers" {
  description = "Kafka bootstrap address."
  value       = module.strata.bootstrap_servers
}

output "bootstrap_servers_by_zone" {
  description = "Zonal bootstrap addresses: list the client's own zone first."
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

output "db_instance_identifier" {
  description = "RDS instance to snapshot before upgrades."
  value       = module.strata.db_instance_identifier
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = module.strata.ecs_cluster_name
}

output "agent_service_name" {
  description = "ECS service of the agents."
  value       = module.strata.agent_service_name
}

output "metadata_service_name" {
  description = "ECS service of the metadata service."
  value       = module.strata.metadata_service_name
}

output "vpc_id" {
  description = "VPC the deployment runs in."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of the tasks (for one-off tasks such as `strata topic`)."
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
